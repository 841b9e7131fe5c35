// The native -> managed bridge: the only code btm's worker threads (and its
// free calls) ever enter.
//
// - Callbacks are static methods marked [MonoPInvokeCallback] (IL2CPP needs
//   both), marshalled from delegates held in static readonly fields, so the
//   GC never collects a delegate native code still points to.
// - Every callback body catches every exception: an exception crossing into
//   native code would kill the process. A task's exception becomes
//   btm_context_fail(message = ex.Message, details = ex.ToString()).
// - Managed objects travel as GCHandle.ToIntPtr: a task's delegate as its
//   userdata, its result, a pass-through payload. btm frees each exactly
//   once through FreeHandle (whatever the task's fate); LiveHandles counts
//   the handles this binding allocated and btm has not freed yet.

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;
using AOT;
using Btm.Native;

namespace Btm
{
    /// <summary>
    /// The payload of every pass-through task (also when the host gives none),
    /// so a completed event can tell a pass-through result (first entry is this
    /// marker, with the event's own task id) from a plain task's result.
    /// </summary>
    internal sealed class PassThroughPayload
    {
        internal readonly object Payload;

        internal PassThroughPayload(object payload)
        {
            Payload = payload;
        }
    }

    /// <summary>The userdata of btm_set_task_hooks: both hooks and the manager's group names (no manager reference).</summary>
    internal sealed class TaskHooks
    {
        internal readonly TaskHook OnStart;
        internal readonly TaskHook OnEnd;
        internal readonly ConcurrentDictionary<ulong, string> GroupNames;

        internal TaskHooks(TaskHook onStart, TaskHook onEnd, ConcurrentDictionary<ulong, string> groupNames)
        {
            OnStart = onStart;
            OnEnd = onEnd;
            GroupNames = groupNames;
        }
    }

    internal static class Bridge
    {
        private static long liveHandles;

        // btm_value layout as this platform lays it out (16 bytes on 64-bit).
        private static readonly int ValueSize = Marshal.SizeOf(typeof(BtmValue));
        internal static readonly int DataOffset = Marshal.OffsetOf(typeof(BtmValue), "data").ToInt32();

        internal static readonly BtmTaskFn RunTaskFn = RunTask;
        internal static readonly BtmFreeFn FreeHandleFn = FreeHandle;
        internal static readonly BtmNotifyFn NotifyFn = Notify;
        internal static readonly BtmThreadHookFn WorkerStartFn = WorkerStart;
        internal static readonly BtmTaskHookFn TaskStartHookFn = TaskStartHook;
        internal static readonly BtmTaskHookFn TaskEndHookFn = TaskEndHook;

        // The same callbacks as raw pointers, for structs that must stay
        // blittable (btm_task_desc). The delegates above keep them alive.
        internal static readonly IntPtr RunTaskFnPtr = Marshal.GetFunctionPointerForDelegate(RunTaskFn);
        internal static readonly IntPtr FreeHandleFnPtr = Marshal.GetFunctionPointerForDelegate(FreeHandleFn);

        [ThreadStatic]
        private static bool isWorkerThread;

        /// <summary>True on a btm worker thread (set by WorkerStart): tasks, task hooks and callbacks that btm runs there.</summary>
        internal static bool IsWorkerThread
        {
            get { return isWorkerThread; }
        }

        internal static long LiveHandles
        {
            get { return Interlocked.Read(ref liveHandles); }
        }

        /// <summary>Allocates a GCHandle whose ownership will pass to btm.</summary>
        internal static IntPtr Alloc(object target)
        {
            GCHandle h = GCHandle.Alloc(target);
            Interlocked.Increment(ref liveHandles);
            return GCHandle.ToIntPtr(h);
        }

        internal static object Target(IntPtr p)
        {
            return GCHandle.FromIntPtr(p).Target;
        }

        /// <summary>btm_free_fn for every GCHandle this binding hands to btm. Runs exactly once per handle.</summary>
        [MonoPInvokeCallback(typeof(BtmFreeFn))]
        internal static void FreeHandle(IntPtr data)
        {
            try
            {
                if (data == IntPtr.Zero)
                {
                    return;
                }
                GCHandle.FromIntPtr(data).Free();
                Interlocked.Decrement(ref liveHandles);
            }
            catch (Exception ex)
            {
                // Nothing may cross into native code.
                KeepAbortInside(ex);
            }
        }

        /// <summary>btm_task_fn for every managed task. Never throws.</summary>
        [MonoPInvokeCallback(typeof(BtmTaskFn))]
        private static void RunTask(IntPtr userdata, IntPtr context)
        {
            TaskContext ctx = null;
            try
            {
                object fn = Target(userdata);
                object result = null;
                var withContext = fn as Func<TaskContext, object>;
                if (withContext != null)
                {
                    ctx = new TaskContext(context);
                    result = withContext(ctx);
                }
                else
                {
                    var plain = fn as Func<object>;
                    if (plain != null)
                    {
                        result = plain();
                    }
                    else
                    {
                        var action = fn as Action<TaskContext>;
                        if (action != null)
                        {
                            ctx = new TaskContext(context);
                            action(ctx);
                        }
                        else
                        {
                            ((Action)fn)();
                        }
                    }
                }
                if (result != null)
                {
                    // Ownership of the handle passes to btm on every path.
                    NativeMethods.btm_context_set_result(context, Alloc(result), FreeHandleFn);
                }
            }
            catch (Exception ex)
            {
                // First: a pending abort would be raised again by the native
                // calls Fail makes, or at the end of this block into btm.
                KeepAbortInside(ex);
                Fail(context, ex);
            }
            finally
            {
                if (ctx != null)
                {
                    ctx.Invalidate();
                }
            }
        }

        /// <summary>
        /// btm_config.thread_start: runs on each worker thread before its first
        /// task. The runtime attaches the native thread here; marking it a
        /// background thread lets the process exit even if a manager was never
        /// disposed (Mono otherwise waits at exit for attached threads, which
        /// wait for a btm_destroy that never comes). Never throws.
        /// </summary>
        [MonoPInvokeCallback(typeof(BtmThreadHookFn))]
        private static void WorkerStart(IntPtr userdata, uint workerIndex)
        {
            isWorkerThread = true;
            try
            {
                Thread current = Thread.CurrentThread;
                current.IsBackground = true;
                if (current.Name == null)
                {
                    current.Name = "btm-worker-" + workerIndex;
                }
            }
            catch (Exception ex)
            {
                KeepAbortInside(ex);
            }
        }

        /// <summary>btm_notify_fn: runs the host's Action on a worker thread, or on the thread of the btm call that made the first event available (see btm_set_notify). Never throws.</summary>
        [MonoPInvokeCallback(typeof(BtmNotifyFn))]
        private static void Notify(IntPtr userdata)
        {
            try
            {
                ((Action)Target(userdata))();
            }
            catch (Exception ex)
            {
                KeepAbortInside(ex);
                ReportCallbackException("events-available callback", ex);
            }
        }

        [MonoPInvokeCallback(typeof(BtmTaskHookFn))]
        private static void TaskStartHook(IntPtr userdata, ulong taskId, uint groupKind, ulong groupValue, uint workerIndex)
        {
            RunHook(userdata, true, taskId, groupKind, groupValue, workerIndex);
        }

        [MonoPInvokeCallback(typeof(BtmTaskHookFn))]
        private static void TaskEndHook(IntPtr userdata, ulong taskId, uint groupKind, ulong groupValue, uint workerIndex)
        {
            RunHook(userdata, false, taskId, groupKind, groupValue, workerIndex);
        }

        private static void RunHook(IntPtr userdata, bool start, ulong taskId, uint groupKind, ulong groupValue, uint workerIndex)
        {
            try
            {
                var hooks = (TaskHooks)Target(userdata);
                TaskHook hook = start ? hooks.OnStart : hooks.OnEnd;
                if (hook == null)
                {
                    return;
                }
                TaskGroup group;
                switch ((BtmGroupKind)groupKind)
                {
                    case BtmGroupKind.Numbered:
                        group = TaskGroup.Numbered(groupValue);
                        break;
                    case BtmGroupKind.Named:
                        string name;
                        group = TaskGroup.Named(hooks.GroupNames.TryGetValue(groupValue, out name) ? name : "?" + groupValue);
                        break;
                    default:
                        group = TaskGroup.Default;
                        break;
                }
                hook(taskId, group, (int)workerIndex);
            }
            catch (Exception ex)
            {
                KeepAbortInside(ex);
                ReportCallbackException(start ? "task start hook" : "task end hook", ex);
            }
        }

        /// <summary>
        /// A ThreadAbortException (Thread.Abort, or Mono aborting the threads of
        /// an unloading domain, as Unity does on every domain reload) is raised
        /// again at the end of every catch block: out of a callback it would
        /// cross into btm's native frames, which skips them (the worker never
        /// returns to btm, its task stays "running" forever and Dispose hangs).
        /// So every callback cancels it and returns normally; the abort becomes
        /// the task's failure. Must run inside the catch block.
        /// </summary>
        private static void KeepAbortInside(Exception ex)
        {
            if (ex is ThreadAbortException)
            {
                try
                {
                    Thread.ResetAbort();
                }
                catch (Exception)
                {
                }
            }
        }

        private static long callbackExceptions;

        /// <summary>Exceptions thrown by host callbacks that have no failure channel (notify, hooks): counted, then dropped.</summary>
        internal static long CallbackExceptions
        {
            get { return Interlocked.Read(ref callbackExceptions); }
        }

        private static void ReportCallbackException(string what, Exception ex)
        {
            try
            {
                Interlocked.Increment(ref callbackExceptions);
                System.Diagnostics.Debug.WriteLine("btm: exception in " + what + ": " + ex);
            }
            catch (Exception)
            {
            }
        }

        private static void Fail(IntPtr context, Exception ex)
        {
            try
            {
                string message;
                string details;
                try
                {
                    message = ex.Message;
                }
                catch (Exception)
                {
                    message = null;
                }
                try
                {
                    details = ex.ToString();
                }
                catch (Exception)
                {
                    details = null;
                }
                if (message == null)
                {
                    message = ex.GetType().FullName;
                }
                NativeMethods.btm_context_fail(context, Utf8.ToNative(message), Utf8.ToNative(details ?? message));
            }
            catch (Exception)
            {
                try
                {
                    // Out of memory or similar: still fail the task ("task failed").
                    NativeMethods.btm_context_fail(context, null, null);
                }
                catch (Exception)
                {
                }
            }
        }

        /// <summary>
        /// Reads <paramref name="count"/> btm_value entries and
        /// appends them as TaskResults, unwrapping pass-through payloads
        /// (dropping the marker of a pass-through without payload).
        /// </summary>
        internal static void ReadEntries(IntPtr values, int count, List<TaskResult> into)
        {
            for (int i = 0; i < count; i++)
            {
                ulong taskId = (ulong)Marshal.ReadInt64(values, i * ValueSize);
                IntPtr data = Marshal.ReadIntPtr(values, i * ValueSize + DataOffset);
                object target = Target(data);
                var marker = target as PassThroughPayload;
                if (marker != null)
                {
                    if (marker.Payload != null)
                    {
                        into.Add(new TaskResult(taskId, marker.Payload));
                    }
                }
                else
                {
                    into.Add(new TaskResult(taskId, target));
                }
            }
        }
    }
}
