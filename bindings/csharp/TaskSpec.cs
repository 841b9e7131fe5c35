using System;
using System.Collections.Generic;
using System.Linq;

namespace Btm
{
    /// <summary>
    /// One task for <see cref="BackgroundTaskManager.AddTasks"/>: the arguments
    /// of <see cref="BackgroundTaskManager.AddTask(Func{TaskContext, object}, int, TaskGroup, IEnumerable{ulong})"/>
    /// (a constructor) or of <see cref="BackgroundTaskManager.AddPassThroughTask"/>
    /// (<see cref="PassThrough"/>). A plain value: nothing is allocated for btm
    /// until AddTasks runs, so an unused TaskSpec holds nothing native.
    /// <c>default(TaskSpec)</c> describes no task and is rejected by AddTasks.
    /// </summary>
    public readonly struct TaskSpec
    {
        // The task delegate (null for a pass-through).
        private readonly Delegate task;
        // A pass-through's payload (null: none, or not a pass-through).
        private readonly object payload;
        // Upstream ids (null: none). Read when AddTasks is called.
        private readonly ulong[] upstream;
        private readonly bool passThrough;

        private TaskSpec(Delegate task, bool passThrough, object payload, int priority, TaskGroup group, IEnumerable<ulong> upstreamTaskIds)
        {
            if (task == null && !passThrough)
            {
                throw new ArgumentNullException("task");
            }
            this.task = task;
            this.passThrough = passThrough;
            this.payload = payload;
            // A copy: later changes to the caller's collection do not reach the spec.
            upstream = upstreamTaskIds == null ? null : upstreamTaskIds.ToArray();
            Priority = priority;
            Group = group;
        }

        /// <summary>A task; the parameters are those of AddTask.</summary>
        public TaskSpec(Func<TaskContext, object> task, int priority = 0, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstreamTaskIds = null)
            : this(task, false, null, priority, group, upstreamTaskIds)
        {
        }

        /// <summary>A task that needs no context.</summary>
        public TaskSpec(Func<object> task, int priority = 0, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstreamTaskIds = null)
            : this(task, false, null, priority, group, upstreamTaskIds)
        {
        }

        /// <summary>A task without a result.</summary>
        public TaskSpec(Action<TaskContext> task, int priority = 0, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstreamTaskIds = null)
            : this(task, false, null, priority, group, upstreamTaskIds)
        {
        }

        /// <summary>A task without context or result.</summary>
        public TaskSpec(Action task, int priority = 0, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstreamTaskIds = null)
            : this(task, false, null, priority, group, upstreamTaskIds)
        {
        }

        /// <summary>A pass-through task; the parameters are those of AddPassThroughTask.</summary>
        public static TaskSpec PassThrough(int priority = 0, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstreamTaskIds = null, object payload = null)
        {
            return new TaskSpec(null, true, payload, priority, group, upstreamTaskIds);
        }

        /// <summary>
        /// An upstream id naming the entry at <paramref name="index"/> (counted
        /// from 0) of the list passed to the same
        /// <see cref="BackgroundTaskManager.AddTasks"/> call, whose id is not
        /// known before the call: a chain, a fan-in or any other graph goes in
        /// one call, all of it or none. Use it in the upstream ids of a TaskSpec,
        /// alongside ids of tasks added before; the named entry must come before
        /// the entry naming it (an entry cannot wait for itself or a later one).
        /// </summary>
        /// <remarks>
        /// The value is <paramref name="index"/> with the top bit set
        /// (<c>BTM_IN_BATCH | index</c>); no task id ever has that bit. Anywhere
        /// else (AddTask, AddPassThroughTask, an index not below the naming
        /// entry's own, an index past the list) the manager rejects it: a
        /// <see cref="BtmException"/> with <see cref="BtmStatus.UnknownUpstream"/>,
        /// and for AddTasks nothing of the list is added.
        /// </remarks>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is negative.</exception>
        public static ulong InBatch(int index)
        {
            if (index < 0)
            {
                throw new ArgumentOutOfRangeException("index", index, "the index of an entry of the list, counted from 0");
            }
            return Btm.Native.NativeMethods.InBatch | (ulong)index;
        }

        /// <summary>Higher runs first; equal priorities run in the order added (exact for tasks queued when a worker looks for work; see btm.h for the rare race with a concurrent add).</summary>
        public int Priority { get; }

        public TaskGroup Group { get; }

        public bool IsPassThrough
        {
            get { return passThrough; }
        }

        /// <summary>The tasks that must complete first (empty for none): ids as given, <see cref="InBatch"/> ones included.</summary>
        public IReadOnlyList<ulong> UpstreamTaskIds
        {
            get { return upstream ?? NoIds; }
        }

        private static readonly ulong[] NoIds = new ulong[0];

        /// <summary>False for <c>default(TaskSpec)</c>.</summary>
        internal bool IsValid
        {
            get { return task != null || passThrough; }
        }

        /// <summary>What btm's userdata will hold: the delegate, or a pass-through's marker payload.</summary>
        internal object CreateUserdataTarget()
        {
            return passThrough ? new PassThroughPayload(payload) : (object)task;
        }

        internal ulong[] Upstream
        {
            get { return upstream; }
        }
    }
}
