// Sealed SafeHandle types over btm's opaque handles.
//
// btm has one owned handle type, btm_manager*. The task context is borrowed
// and stack-scoped (valid during one task function), so it stays an IntPtr.

using System;
using System.Runtime.InteropServices;

namespace Btm.Native
{
    /// <summary>
    /// Owns a btm_manager*. Releasing it calls btm_destroy, which shuts the
    /// manager down (if not done yet, waiting for running tasks) and frees
    /// every userdata, payload and result still held: the binding's free
    /// callback runs for each on the releasing thread. P/Invoke calls hold a
    /// reference on the handle for their duration, so btm_destroy never runs
    /// under a call in flight on another thread.
    /// </summary>
    internal sealed class BtmManagerHandle : SafeHandle
    {
        // Called by the marshaller for `out BtmManagerHandle`.
        private BtmManagerHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        protected override bool ReleaseHandle()
        {
            // Dispose and the exit hook have shut the manager down already (this
            // returns ALREADY_SHUT_DOWN at once). A manager that was never
            // disposed gets here from the finalizer thread: btm_destroy alone
            // would block it for as long as a running task takes (stalling every
            // finalizer of the process); a shut-down with no wait lets running
            // tasks finish alone instead, freeing their delegates when they return.
            UIntPtr stillRunning;
            NativeMethods.btm_shut_down(handle, 0, out stillRunning);
            NativeMethods.btm_destroy(handle);
            return true;
        }
    }
}
