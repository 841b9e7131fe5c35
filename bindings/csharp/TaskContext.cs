using System;
using System.Collections.Generic;
using Btm.Native;

namespace Btm
{
    /// <summary>Thrown by <see cref="TaskContext.ThrowIfStopped"/>; the task's outcome is dropped anyway.</summary>
    public sealed class TaskStoppedException : OperationCanceledException
    {
        public TaskStoppedException(ulong taskId)
            : base("task " + taskId + " was stopped")
        {
        }
    }

    /// <summary>
    /// What a running task sees of btm. Valid only while the task function
    /// runs, on its worker thread; afterwards every member except
    /// <see cref="TaskId"/> and an already read <see cref="UpstreamResults"/>
    /// throws InvalidOperationException.
    /// </summary>
    public sealed class TaskContext
    {
        private static readonly TaskResult[] NoResults = new TaskResult[0];

        private IntPtr context;
        // Held by every native call through the context and by Invalidate: a
        // call from another thread (a thread the task started) that passed the
        // validity check must not run on into the dead context once the task
        // function has returned (the context lives on the worker's stack).
        private readonly object gate = new object();
        private readonly ulong taskId;
        private TaskResult[] upstream;

        internal TaskContext(IntPtr context)
        {
            this.context = context;
            taskId = NativeMethods.btm_context_task_id(context);
        }

        internal void Invalidate()
        {
            lock (gate)
            {
                context = IntPtr.Zero;
            }
        }

        private IntPtr Native
        {
            get
            {
                IntPtr p = context;
                if (p == IntPtr.Zero)
                {
                    throw new InvalidOperationException("the TaskContext is only valid while its task runs");
                }
                return p;
            }
        }

        /// <summary>This task's id.</summary>
        public ulong TaskId
        {
            get { return taskId; }
        }

        /// <summary>
        /// True once the task has been stopped (stop, stop-all, shut down):
        /// its result or failure will be dropped, so a long task may give up
        /// early. Cheap (one atomic load).
        /// </summary>
        public bool IsStopped
        {
            get
            {
                lock (gate)
                {
                    return NativeMethods.btm_context_is_stopped(Native);
                }
            }
        }

        /// <summary>Throws <see cref="TaskStoppedException"/> if the task has been stopped.</summary>
        public void ThrowIfStopped()
        {
            if (IsStopped)
            {
                throw new TaskStoppedException(taskId);
            }
        }

        /// <summary>
        /// Reports progress (fraction clamped to 0..1, optional short message);
        /// the host receives a TaskProgress event from PollEvents. Events are
        /// coalesced: the latest value wins. Returns false when the task was
        /// stopped (nothing is reported). Report at UI rates, not per byte.
        /// </summary>
        public bool ReportProgress(double fraction, string message = null)
        {
            if (double.IsNaN(fraction))
            {
                throw new ArgumentOutOfRangeException("fraction", "NaN is not a progress fraction");
            }
            byte[] nativeMessage = Utf8.ToNative(message);
            BtmStatus status;
            lock (gate)
            {
                status = NativeMethods.btm_context_report_progress(Native, fraction, nativeMessage);
            }
            if (status == BtmStatus.NotFound)
            {
                return false;
            }
            BtmException.ThrowIfFailed(status, "btm_context_report_progress");
            return true;
        }

        /// <summary>
        /// The results of this task's upstream tasks, in the order those
        /// completed. A pass-through upstream contributes its payload and its
        /// own gathered entries; upstream tasks that returned null, or were
        /// stopped, contribute nothing.
        /// </summary>
        public IReadOnlyList<TaskResult> UpstreamResults
        {
            get
            {
                lock (gate)
                {
                    if (upstream == null)
                    {
                        upstream = ReadUpstream(Native);
                    }
                    return upstream;
                }
            }
        }

        /// <summary>The upstream result of one task, or default(T) when it gave none.</summary>
        public T GetUpstreamResult<T>(ulong upstreamTaskId)
        {
            foreach (TaskResult r in UpstreamResults)
            {
                if (r.TaskId == upstreamTaskId)
                {
                    return (T)r.Value;
                }
            }
            return default(T);
        }

        /// <summary>The dictionary view of the upstream results (later completions win a key clash).</summary>
        public Dictionary<string, object> GetUpstreamDictionary()
        {
            return TaskResults.Merge(UpstreamResults);
        }

        private static TaskResult[] ReadUpstream(IntPtr context)
        {
            IntPtr values;
            UIntPtr count;
            BtmException.ThrowIfFailed(NativeMethods.btm_context_upstream(context, out values, out count), "btm_context_upstream");
            int n = checked((int)count.ToUInt64());
            if (n == 0)
            {
                return NoResults;
            }
            var list = new List<TaskResult>(n);
            Bridge.ReadEntries(values, n, list);
            return list.ToArray();
        }
    }
}
