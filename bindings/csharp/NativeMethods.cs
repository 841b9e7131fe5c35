// Raw P/Invoke layer for libbtm (include/btm.h). Hand-written, one
// declaration per exported function, names exactly as exported: the drift
// check in tests/csharp/run.sh compares the DllImport names below with
// `nm -D --defined-only libbtm.so`, and the test suite compares parameter
// counts with include/btm.h and struct layouts with the C compiler's.
//
// Rules of this layer:
// - Nothing here is public; the public API is BackgroundTaskManager.
// - C `bool` is one byte: every bool is [MarshalAs(UnmanagedType.U1)].
// - Strings handed to btm are NUL-terminated UTF-8 byte[] (never `string`,
//   whose default marshalling differs between Mono, .NET and IL2CPP), made by
//   Utf8.NameToNative for names (exact, or ArgumentException) and by
//   Utf8.ToNative for free text (lenient); strings
//   returned by btm are IntPtr (never `string`: the marshaller would free
//   btm's static or borrowed memory).
// - The manager handle is a SafeHandle (BtmManagerHandle) for every call
//   the host makes; the task context is a plain IntPtr (it lives on the
//   worker's stack for the duration of the task function only).
// - No `unsafe` code, so Unity projects need no "Allow unsafe code".

using System;
using System.Runtime.InteropServices;

namespace Btm
{
    /// <summary>Status codes of the C API (btm_status). 0 is OK; the numbers are ABI and never renumbered.</summary>
    public enum BtmStatus : uint
    {
        Ok = 0,
        NotFound = 1,
        NullArgument = 2,
        InvalidArgument = 3,
        UnknownUpstream = 4,
        InvalidUtf8 = 5,
        InvalidThreadCount = 6,
        ShutDown = 7,
        AlreadyShutDown = 8,
        TimedOut = 9,
        WouldDeadlock = 10,
        ZeroCapacity = 11,
        InvalidConfig = 12,
        InvalidGroup = 13,
        NotQueued = 14,
        Panic = 15,
        TooManyGroups = 16,
        Forked = 17,
        Unsupported = 18,
    }
}

namespace Btm.Native
{
    internal enum BtmEventKind : uint
    {
        TaskCompleted = 1,
        TaskFailed = 2,
        GroupFinished = 3,
        TaskProgress = 4,
    }

    internal enum BtmGroupKind : uint
    {
        Default = 0,
        Numbered = 1,
        Named = 2,
    }

    /// <summary>btm_group (16 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct BtmGroup
    {
        public uint kind;
        public uint reserved;
        public ulong value;
    }

    /// <summary>btm_value (16 bytes): one result entry.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct BtmValue
    {
        public ulong task_id;
        public IntPtr data;
    }

    /// <summary>btm_event (80 bytes), blittable.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct BtmEvent
    {
        public uint kind;
        public uint reserved;
        public ulong task_id;
        public BtmGroup group;
        public IntPtr group_name;
        public IntPtr results;
        public UIntPtr result_count;
        public IntPtr message;
        public IntPtr details;
        public double progress;
    }

    /// <summary>btm_config (48 bytes on 64-bit). Initialised with btm_config_init_size(ref config, its size), which writes exactly this struct (a newer library's btm_config_init would write its own, longer one).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct BtmConfig
    {
        public uint struct_size;
        public int max_threads;
        [MarshalAs(UnmanagedType.U1)]
        public bool start_processing;
        public IntPtr thread_start;          // btm_thread_hook_fn
        public IntPtr thread_stop;           // btm_thread_hook_fn
        public IntPtr thread_hook_userdata;
        public IntPtr thread_hook_free;      // btm_free_fn
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct BtmStats
    {
        public ulong queued;
        public ulong blocked;
        public ulong running;
        public ulong undelivered;
        public ulong completed_total;
        public ulong failed_total;
        public ulong stopped_total;
        public ulong threads;
        public ulong spawn_failures;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct BtmGroupStats
    {
        public ulong queued;
        public ulong blocked;
        public ulong running;
        public ulong undelivered;
    }

    /// <summary>
    /// btm_task_desc (64 bytes on 64-bit): one entry of btm_add_tasks. Blittable
    /// (function pointers as IntPtr, from Marshal.GetFunctionPointerForDelegate
    /// of Bridge's static delegates), so an array of them is pinned, not copied.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct BtmTaskDesc
    {
        public IntPtr task_fn;               // btm_task_fn; IntPtr.Zero for a pass-through
        public IntPtr userdata;              // ownership passes to btm on every call that reaches it
        public IntPtr userdata_free;         // btm_free_fn
        public BtmGroup group;
        public IntPtr upstream;              // const btm_task_id *: pinned by the caller for the call
        public UIntPtr upstream_len;
        public int priority;
        public uint flags;                   // 0 or BTM_TASK_PASS_THROUGH
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct BtmStopReport
    {
        public ulong before_start;
        public ulong while_running;
        public ulong after_finish;
    }

    /// <summary>btm_task_fn: void (*)(void *userdata, btm_task_context *context).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void BtmTaskFn(IntPtr userdata, IntPtr context);

    /// <summary>btm_free_fn: void (*)(void *data).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void BtmFreeFn(IntPtr data);

    /// <summary>btm_notify_fn: void (*)(void *userdata).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void BtmNotifyFn(IntPtr userdata);

    /// <summary>btm_task_hook_fn: void (*)(void *userdata, uint64_t task_id, uint32_t group_kind, uint64_t group_value, uint32_t worker_index).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void BtmTaskHookFn(IntPtr userdata, ulong taskId, uint groupKind, ulong groupValue, uint workerIndex);

    /// <summary>btm_thread_hook_fn: void (*)(void *userdata, uint32_t worker_index).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void BtmThreadHookFn(IntPtr userdata, uint workerIndex);

    internal static class NativeMethods
    {
#if (UNITY_IOS || UNITY_WEBGL) && !UNITY_EDITOR
        internal const string Lib = "__Internal";
#else
        internal const string Lib = "btm";
#endif

        internal const uint WaitForever = uint.MaxValue;    // BTM_WAIT_FOREVER
        internal const int DefaultMaxThreads = 8;           // BTM_DEFAULT_MAX_THREADS
        internal const int MaxThreadsLimit = 1024;          // BTM_MAX_THREADS_LIMIT
        internal const uint TaskPassThrough = 1;            // BTM_TASK_PASS_THROUGH (btm_task_desc.flags)
        internal const ulong InBatch = 1UL << 63;           // BTM_IN_BATCH (btm_task_desc.upstream: | index of an earlier descriptor of the same call)

        // ---- task context (worker thread, during the task function only) ----

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ulong btm_context_task_id(IntPtr context);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr btm_context_manager(IntPtr context);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_context_upstream(IntPtr context, out IntPtr values_out, out UIntPtr count_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_context_set_result(IntPtr context, IntPtr data, BtmFreeFn data_free);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_context_fail(IntPtr context, byte[] message, byte[] details);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        [return: MarshalAs(UnmanagedType.U1)]
        internal static extern bool btm_context_is_stopped(IntPtr context);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_context_report_progress(IntPtr context, double fraction, byte[] message);

        // ---- events ----

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_poll_events(BtmManagerHandle manager, [Out] BtmEvent[] events, UIntPtr capacity, out UIntPtr count_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_wait_events(BtmManagerHandle manager, uint timeout_ms);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_wait_idle(BtmManagerHandle manager, uint timeout_ms);

        // ---- host integration (wake-ups, instrumentation) ----

        /// <summary>Ownership of userdata passes to btm on every call that reaches native code. NULL notify removes the callback.</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_set_notify(BtmManagerHandle manager, BtmNotifyFn notify, IntPtr userdata, BtmFreeFn userdata_free);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_get_event_fd(BtmManagerHandle manager, out int fd_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_get_event_handle(BtmManagerHandle manager, out IntPtr handle_out);

        /// <summary>Ownership of userdata passes to btm on every call that reaches native code. Both hooks NULL removes them.</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_set_task_hooks(BtmManagerHandle manager, BtmTaskHookFn on_start, BtmTaskHookFn on_end, IntPtr userdata, BtmFreeFn userdata_free);

        // ---- manager ----

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_config_init(ref BtmConfig config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_config_init_size(ref BtmConfig config, UIntPtr struct_size);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_create(ref BtmConfig config, out BtmManagerHandle manager_out);

        /// <summary>Only BtmManagerHandle.ReleaseHandle calls this.</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void btm_destroy(IntPtr manager);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_start_processing(BtmManagerHandle manager);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_pause_processing(BtmManagerHandle manager);

        /// <summary>A raw handle: BtmManagerHandle.ReleaseHandle calls it too, once the SafeHandle is closed (callers otherwise hold a reference on the handle for the call).</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_shut_down(IntPtr manager, uint timeout_ms, out UIntPtr still_running_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_next_group_id(BtmManagerHandle manager, out BtmGroup group_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_group_named(BtmManagerHandle manager, byte[] name, out BtmGroup group_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_group_name(BtmManagerHandle manager, ref BtmGroup group, out IntPtr name_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_set_max_threads(BtmManagerHandle manager, int max_threads);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_get_stats(BtmManagerHandle manager, out BtmStats stats_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_get_group_stats(BtmManagerHandle manager, ref BtmGroup group, out BtmGroupStats stats_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr btm_status_str(uint status);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr btm_version();

        // ---- tasks ----

        /// <summary>Ownership of userdata passes to btm on every call that reaches native code, even a failing one.</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_add_task(BtmManagerHandle manager, BtmTaskFn task_fn, IntPtr userdata, BtmFreeFn userdata_free, int priority, ref BtmGroup group, ulong[] upstream, UIntPtr upstream_len, out ulong task_id_out);

        /// <summary>Ownership of payload passes to btm on every call that reaches native code, even a failing one.</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_add_pass_through_task(BtmManagerHandle manager, int priority, ref BtmGroup group, ulong[] upstream, UIntPtr upstream_len, IntPtr payload, BtmFreeFn payload_free, out ulong task_id_out);

        /// <summary>
        /// Ownership of every descriptor's userdata passes to btm on every call that
        /// reaches native code: on failure btm frees each one (and adds none). Every
        /// descriptor's upstream array must stay pinned for the call.
        /// </summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_add_tasks(BtmManagerHandle manager, [In] BtmTaskDesc[] tasks, UIntPtr count, [Out] ulong[] task_ids_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_stop_task(BtmManagerHandle manager, ulong task_id, [MarshalAs(UnmanagedType.U1)] bool stop_upstream, [MarshalAs(UnmanagedType.U1)] bool stop_downstream, out BtmStopReport report_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_stop_task_group(BtmManagerHandle manager, ref BtmGroup group, [MarshalAs(UnmanagedType.U1)] bool stop_upstream, [MarshalAs(UnmanagedType.U1)] bool stop_downstream, out BtmStopReport report_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_stop_all_tasks(BtmManagerHandle manager, out BtmStopReport report_out);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern BtmStatus btm_set_task_priority(BtmManagerHandle manager, ulong task_id, int priority);
    }
}
