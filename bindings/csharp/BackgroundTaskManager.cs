// The public API: BackgroundTaskManager, modelled on the original
// (tk-framework-shotgunutils' BackgroundTaskManager), over libbtm's C API.

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using Btm.Native;

namespace Btm
{
    /// <summary>A task completed. <paramref name="result"/> is what the task returned (null for none); for a pass-through task it is a <see cref="PassThroughResult"/>.</summary>
    public delegate void TaskCompletedHandler(ulong taskId, TaskGroup group, object result);

    /// <summary>A task failed, itself (an exception: <paramref name="details"/> is Exception.ToString()) or because an upstream task failed (same message and details).</summary>
    public delegate void TaskFailedHandler(ulong taskId, TaskGroup group, string message, string details);

    /// <summary>The last live task of a group completed or failed (never because of a stop).</summary>
    public delegate void TaskGroupFinishedHandler(TaskGroup group);

    /// <summary>A running task reported progress (coalesced: the latest value wins).</summary>
    public delegate void TaskProgressHandler(ulong taskId, TaskGroup group, double progress, string message);

    /// <summary>An instrumentation hook, run on the worker thread just before (or after) a task's delegate (not for pass-through tasks).</summary>
    public delegate void TaskHook(ulong taskId, TaskGroup group, int workerIndex);

    /// <summary>What a stop reached, by the state each stopped task was in.</summary>
    public readonly struct StopReport
    {
        internal StopReport(BtmStopReport r)
        {
            BeforeStart = checked((long)r.before_start);
            WhileRunning = checked((long)r.while_running);
            AfterFinish = checked((long)r.after_finish);
        }

        /// <summary>Stopped while queued or blocked: they never run.</summary>
        public long BeforeStart { get; }

        /// <summary>Stopped while running: they run to the end; their outcome is dropped.</summary>
        public long WhileRunning { get; }

        /// <summary>Finished but not yet polled: their event is withdrawn.</summary>
        public long AfterFinish { get; }

        /// <summary>Number of tasks stopped (0: the task or group was not live).</summary>
        public long Total
        {
            get { return BeforeStart + WhileRunning + AfterFinish; }
        }
    }

    /// <summary>A snapshot of a manager's counters.</summary>
    public readonly struct ManagerStats
    {
        internal ManagerStats(BtmStats s)
        {
            Queued = (long)s.queued;
            Blocked = (long)s.blocked;
            Running = (long)s.running;
            Undelivered = (long)s.undelivered;
            CompletedTotal = (long)s.completed_total;
            FailedTotal = (long)s.failed_total;
            StoppedTotal = (long)s.stopped_total;
            Threads = (long)s.threads;
            SpawnFailures = (long)s.spawn_failures;
        }

        public long Queued { get; }
        public long Blocked { get; }
        public long Running { get; }
        /// <summary>Events a PollEvents call would deliver now.</summary>
        public long Undelivered { get; }
        public long CompletedTotal { get; }
        public long FailedTotal { get; }
        public long StoppedTotal { get; }
        /// <summary>Worker threads alive.</summary>
        public long Threads { get; }
        public long SpawnFailures { get; }
    }

    /// <summary>Live tasks of one group, by state.</summary>
    public readonly struct GroupStats
    {
        internal GroupStats(BtmGroupStats s)
        {
            Queued = (long)s.queued;
            Blocked = (long)s.blocked;
            Running = (long)s.running;
            Undelivered = (long)s.undelivered;
        }

        public long Queued { get; }
        public long Blocked { get; }
        public long Running { get; }
        public long Undelivered { get; }

        public long Total
        {
            get { return Queued + Blocked + Running + Undelivered; }
        }
    }

    /// <summary>
    /// Runs tasks on a pool of native worker threads and reports their outcome
    /// through C# events raised by <see cref="PollEvents"/>, on the thread that
    /// calls it (normally the main thread: call it once per frame or UI tick).
    ///
    /// Tasks are delegates: <c>Func&lt;object&gt;</c>, <c>Func&lt;TaskContext, object&gt;</c>,
    /// <c>Action</c> or <c>Action&lt;TaskContext&gt;</c>. A task's return value is
    /// its result (null: no result); an exception makes it fail with
    /// message = ex.Message and details = ex.ToString(). Tasks run on worker
    /// threads: they must not touch thread-affine state (Unity objects, UI).
    ///
    /// Every method may be called from any thread, including from inside a
    /// task (capture the manager in the task's closure). Events are only
    /// raised inside PollEvents. Always Dispose the manager (Unity: in
    /// OnDestroy); a manager that is never disposed keeps its pending tasks'
    /// delegates alive.
    /// </summary>
    public sealed class BackgroundTaskManager : IDisposable
    {
        /// <summary>Number of threads a maxThreads of 0 stands for (BTM_DEFAULT_MAX_THREADS).</summary>
        public const int DefaultMaxThreads = NativeMethods.DefaultMaxThreads;

        private readonly BtmManagerHandle handle;
        // Serialises polls (and Dispose) so no poll reads pointers a later poll
        // or btm_destroy has released.
        private readonly object pollLock = new object();
        // Serialises whole PollEvents calls (handlers included), so that handlers
        // never run concurrently and events are raised in order, whichever
        // threads poll. Not taken by Dispose (a handler may wait for a thread
        // that disposes). Reentrant: a handler may poll.
        private readonly object raiseLock = new object();
        private readonly BtmEvent[] eventBuffer = new BtmEvent[1];
        private readonly List<TaskResult> entryBuffer = new List<TaskResult>();
        private readonly ConcurrentDictionary<string, ulong> namedGroupIds = new ConcurrentDictionary<string, ulong>(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<ulong, string> groupNamesById = new ConcurrentDictionary<ulong, string>();
        private int disposed;
        // 0: running; 1: shut down, every worker exited; 2: shut down, timed out.
        private int shutDownState;
        private long stillRunningAtShutDown;
        // Set once the first btm_shut_down call has returned (shutDownState holds its answer).
        private readonly ManualResetEventSlim shutDownAnswered = new ManualResetEventSlim(false);

        /// <summary>Raised by PollEvents when a task completed.</summary>
        public event TaskCompletedHandler TaskCompleted;

        /// <summary>Raised by PollEvents when a task failed.</summary>
        public event TaskFailedHandler TaskFailed;

        /// <summary>Raised by PollEvents right after the event of the last live task of a group.</summary>
        public event TaskGroupFinishedHandler TaskGroupFinished;

        /// <summary>Raised by PollEvents when a running task reported progress.</summary>
        public event TaskProgressHandler TaskProgress;

        /// <summary>
        /// Creates a manager. <paramref name="maxThreads"/>: worker threads, created
        /// lazily (0 means 8; up to 1024). With <paramref name="startProcessing"/>
        /// false (the default, as in the original) tasks queue until
        /// <see cref="StartProcessing"/>.
        /// </summary>
        public BackgroundTaskManager(int maxThreads = DefaultMaxThreads, bool startProcessing = false)
        {
            var config = new BtmConfig();
            BtmException.ThrowIfFailed(
                NativeMethods.btm_config_init_size(ref config, (UIntPtr)Marshal.SizeOf(typeof(BtmConfig))), "btm_config_init_size");
            config.max_threads = maxThreads;
            config.start_processing = startProcessing;
            config.thread_start = Marshal.GetFunctionPointerForDelegate(Bridge.WorkerStartFn);
            BtmManagerHandle created;
            BtmStatus status = NativeMethods.btm_create(ref config, out created);
            if (status != BtmStatus.Ok)
            {
                if (created != null)
                {
                    created.SetHandleAsInvalid();
                }
                throw new BtmException(status, "btm_create(maxThreads: " + maxThreads + ")");
            }
            handle = created;
            Register(this);
        }

        // ------------------------------------------------------------------
        // Managers still alive when the process exits or the domain unloads

        private static readonly object registryLock = new object();
        private static readonly List<WeakReference> registry = new List<WeakReference>();
        private static bool exitHooked;

        /// <summary>How long the exit hook waits, over all managers, for running tasks to return.</summary>
        private const int ExitShutDownBudgetMs = 2000;

        private static void Register(BackgroundTaskManager manager)
        {
            lock (registryLock)
            {
                if (!exitHooked)
                {
                    exitHooked = true;
                    AppDomain.CurrentDomain.ProcessExit += (s, e) => ShutDownAllForExit();
                    AppDomain.CurrentDomain.DomainUnload += (s, e) => ShutDownAllForExit();
                }
                registry.RemoveAll(w => !w.IsAlive);
                registry.Add(new WeakReference(manager));
            }
        }

        private static void Unregister(BackgroundTaskManager manager)
        {
            lock (registryLock)
            {
                registry.RemoveAll(w => !w.IsAlive || ReferenceEquals(w.Target, manager));
            }
        }

        /// <summary>
        /// A manager that was never disposed keeps worker threads that the
        /// runtime has attached; Mono would wait for them forever at exit (and
        /// Unity must not unload a domain while they may run managed code). So
        /// at ProcessExit / DomainUnload every live manager is shut down (with a
        /// shared, bounded wait for running tasks) and disposed.
        /// </summary>
        private static void ShutDownAllForExit()
        {
            List<BackgroundTaskManager> alive;
            lock (registryLock)
            {
                alive = registry.Select(w => w.Target as BackgroundTaskManager).Where(m => m != null).ToList();
                registry.Clear();
            }
            var clock = System.Diagnostics.Stopwatch.StartNew();
            foreach (BackgroundTaskManager m in alive)
            {
                try
                {
                    // Bounded even when another thread's ShutDown is still
                    // waiting for the workers (the answer Dispose waits for).
                    m.DisposeCore((int)Math.Max(0, ExitShutDownBudgetMs - clock.ElapsedMilliseconds));
                }
                catch (Exception)
                {
                    // Exiting: nothing useful to do with it.
                }
            }
        }

        /// <summary>Handles (task delegates, results, payloads) this binding gave btm and btm has not freed yet, over all managers. For tests and leak checks.</summary>
        public static long LiveGCHandleCount
        {
            get { return Bridge.LiveHandles; }
        }

        /// <summary>Version of the loaded native library ("MAJOR.MINOR.PATCH").</summary>
        public static string NativeVersion
        {
            get { return Utf8.FromNative(NativeMethods.btm_version()); }
        }

        public bool IsDisposed
        {
            get { return Volatile.Read(ref disposed) != 0; }
        }

        /// <summary>True once ShutDown (or Dispose) has been called.</summary>
        public bool IsShutDown
        {
            get { return Volatile.Read(ref shutDownState) != 0; }
        }

        // ------------------------------------------------------------------
        // Adding tasks

        /// <summary>Adds a task; returns its id (unique, never reused, never 0).</summary>
        /// <param name="task">Runs on a worker thread; its return value is the task's result.</param>
        /// <param name="priority">Higher runs first; equal priorities run in the order added (exact for tasks queued when a worker looks for work; see btm.h for the rare race with a concurrent add).</param>
        /// <param name="group">The task's group (a string converts to a named group).</param>
        /// <param name="upstreamTaskIds">Tasks that must complete first; their results reach this task through <see cref="TaskContext.UpstreamResults"/>.</param>
        public ulong AddTask(Func<TaskContext, object> task, int priority = 0, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstreamTaskIds = null)
        {
            return AddTaskCore(task, priority, group, upstreamTaskIds);
        }

        /// <summary>Adds a task that needs no context; see the main overload.</summary>
        public ulong AddTask(Func<object> task, int priority = 0, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstreamTaskIds = null)
        {
            return AddTaskCore(task, priority, group, upstreamTaskIds);
        }

        /// <summary>Adds a task without a result; see the main overload.</summary>
        public ulong AddTask(Action<TaskContext> task, int priority = 0, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstreamTaskIds = null)
        {
            return AddTaskCore(task, priority, group, upstreamTaskIds);
        }

        /// <summary>Adds a task without context or result; see the main overload.</summary>
        public ulong AddTask(Action task, int priority = 0, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstreamTaskIds = null)
        {
            return AddTaskCore(task, priority, group, upstreamTaskIds);
        }

        /// <summary>
        /// Adds a pass-through task: it runs no code but is scheduled like any
        /// other task, then completes with a <see cref="PassThroughResult"/>
        /// gathering its <paramref name="payload"/> (if not null) and the results
        /// of its upstream tasks. Its downstream tasks see those entries.
        /// </summary>
        public ulong AddPassThroughTask(int priority = 0, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstreamTaskIds = null, object payload = null)
        {
            ThrowIfDisposed();
            BtmGroup nativeGroup = ToNative(group);
            ulong[] upstream = ToArray(upstreamTaskIds);
            IntPtr userPayload = Bridge.Alloc(new PassThroughPayload(payload));
            BtmStatus status = BtmStatus.Panic;
            ulong id = 0;
            bool reachedNative = false;
            try
            {
                status = NativeMethods.btm_add_pass_through_task(handle, priority, ref nativeGroup, upstream, Length(upstream), userPayload, Bridge.FreeHandleFn, out id);
                reachedNative = true;
            }
            finally
            {
                // btm owns the payload from the moment the call reaches it (even
                // on error); free it only if the call never got there.
                if (!reachedNative)
                {
                    Bridge.FreeHandle(userPayload);
                }
            }
            BtmException.ThrowIfFailed(status, "btm_add_pass_through_task");
            return id;
        }

        private ulong AddTaskCore(Delegate task, int priority, TaskGroup group, IEnumerable<ulong> upstreamTaskIds)
        {
            if (task == null)
            {
                throw new ArgumentNullException("task");
            }
            ThrowIfDisposed();
            BtmGroup nativeGroup = ToNative(group);
            ulong[] upstream = ToArray(upstreamTaskIds);
            IntPtr userdata = Bridge.Alloc(task);
            BtmStatus status = BtmStatus.Panic;
            ulong id = 0;
            bool reachedNative = false;
            try
            {
                status = NativeMethods.btm_add_task(handle, Bridge.RunTaskFn, userdata, Bridge.FreeHandleFn, priority, ref nativeGroup, upstream, Length(upstream), out id);
                reachedNative = true;
            }
            finally
            {
                // Ownership passes to btm on every call that reaches it, even a
                // failing one (btm calls FreeHandle itself).
                if (!reachedNative)
                {
                    Bridge.FreeHandle(userdata);
                }
            }
            BtmException.ThrowIfFailed(status, "btm_add_task");
            return id;
        }

        /// <summary>
        /// Adds every task of <paramref name="tasks"/> in one native call (one
        /// lock section in btm), all of them or none; returns their ids in
        /// order: one P/Invoke for the whole list.
        /// Upstream ids are ids issued before this call, or
        /// <see cref="TaskSpec.InBatch"/>(j) for the entry at index j of this
        /// list, which must come before the entry naming it: chains and fan-ins
        /// within the list go in this one call. The ids of one list are
        /// consecutive, in list order. On a BtmException nothing
        /// was added, no id was issued and no task runs. An empty list adds
        /// nothing. Lists of a few hundred to a few thousand tasks work best
        /// (btm holds its lock for the whole list).
        /// </summary>
        /// <exception cref="ArgumentNullException"><paramref name="tasks"/> is null.</exception>
        /// <exception cref="ArgumentException">An entry is <c>default(TaskSpec)</c>.</exception>
        /// <exception cref="BtmException">btm rejected the list (e.g. UnknownUpstream: an id never issued, or an InBatch index not below its entry's own; ShutDown).</exception>
        public ulong[] AddTasks(IReadOnlyList<TaskSpec> tasks)
        {
            if (tasks == null)
            {
                throw new ArgumentNullException("tasks");
            }
            ThrowIfDisposed();
            int count = tasks.Count;
            var descs = new BtmTaskDesc[count];
            var targets = new object[count];
            var ids = new ulong[count];

            // 1. Everything that may throw before native code owns anything:
            //    validation, group interning, the upstream buffer. No GCHandle yet.
            var upstreamArrays = new ulong[count][];
            int upstreamTotal = 0;
            for (int i = 0; i < count; i++)
            {
                TaskSpec spec = tasks[i];
                if (!spec.IsValid)
                {
                    throw new ArgumentException("tasks[" + i + "] is default(TaskSpec): create entries with new TaskSpec(task, ...) or TaskSpec.PassThrough(...)", "tasks");
                }
                targets[i] = spec.CreateUserdataTarget();
                descs[i].task_fn = spec.IsPassThrough ? IntPtr.Zero : Bridge.RunTaskFnPtr;
                descs[i].userdata_free = Bridge.FreeHandleFnPtr;
                descs[i].group = ToNative(spec.Group);
                descs[i].priority = spec.Priority;
                descs[i].flags = spec.IsPassThrough ? NativeMethods.TaskPassThrough : 0u;
                ulong[] upstream = spec.Upstream;
                if (upstream != null && upstream.Length > 0)
                {
                    upstreamArrays[i] = upstream;
                    upstreamTotal = checked(upstreamTotal + upstream.Length);
                }
            }
            // Every entry's upstream ids, copied into one buffer that is pinned
            // for the call (one pin, and a snapshot the caller cannot change
            // under btm); each descriptor points into it.
            ulong[] upstreamBuffer = upstreamTotal == 0 ? null : new ulong[upstreamTotal];
            if (upstreamBuffer != null)
            {
                int offset = 0;
                for (int i = 0; i < count; i++)
                {
                    ulong[] upstream = upstreamArrays[i];
                    if (upstream != null)
                    {
                        Array.Copy(upstream, 0, upstreamBuffer, offset, upstream.Length);
                        descs[i].upstream_len = (UIntPtr)(uint)upstream.Length;
                        offset += upstream.Length;
                    }
                }
            }

            // 2. The GCHandles and the call. btm owns every userdata from the
            //    moment the call reaches it, even a failing one (it frees each
            //    through FreeHandle); before that, they are ours to free.
            GCHandle pin = default(GCHandle);
            int allocated = 0;
            BtmStatus status = BtmStatus.Panic;
            bool reachedNative = false;
            try
            {
                if (upstreamBuffer != null)
                {
                    pin = GCHandle.Alloc(upstreamBuffer, GCHandleType.Pinned);
                    IntPtr address = pin.AddrOfPinnedObject();
                    int offset = 0;
                    for (int i = 0; i < count; i++)
                    {
                        int len = (int)descs[i].upstream_len.ToUInt32();
                        if (len > 0)
                        {
                            descs[i].upstream = IntPtr.Add(address, offset * sizeof(ulong));
                            offset += len;
                        }
                    }
                }
                for (; allocated < count; allocated++)
                {
                    descs[allocated].userdata = Bridge.Alloc(targets[allocated]);
                }
                status = NativeMethods.btm_add_tasks(handle, descs, (UIntPtr)(uint)count, ids);
                reachedNative = true;
            }
            finally
            {
                if (pin.IsAllocated)
                {
                    pin.Free();
                }
                if (!reachedNative)
                {
                    for (int i = 0; i < allocated; i++)
                    {
                        Bridge.FreeHandle(descs[i].userdata);
                    }
                }
            }
            BtmException.ThrowIfFailed(status, "btm_add_tasks");
            return ids;
        }

        /// <summary>A numbered group this manager has never returned before (1, 2, 3...).</summary>
        public TaskGroup NextGroupId()
        {
            ThrowIfDisposed();
            BtmGroup g;
            BtmException.ThrowIfFailed(NativeMethods.btm_next_group_id(handle, out g), "btm_next_group_id");
            return TaskGroup.Numbered(g.value);
        }

        /// <summary>Changes the priority of a task that has not started. False if it is running, finished or not live.</summary>
        public bool SetTaskPriority(ulong taskId, int priority)
        {
            ThrowIfDisposed();
            BtmStatus status = NativeMethods.btm_set_task_priority(handle, taskId, priority);
            if (status == BtmStatus.NotFound || status == BtmStatus.NotQueued)
            {
                return false;
            }
            BtmException.ThrowIfFailed(status, "btm_set_task_priority");
            return true;
        }

        // ------------------------------------------------------------------
        // Processing

        /// <summary>Starts (or resumes) running queued tasks. Idempotent.</summary>
        public void StartProcessing()
        {
            ThrowIfDisposed();
            BtmException.ThrowIfFailed(NativeMethods.btm_start_processing(handle), "btm_start_processing");
        }

        /// <summary>Running tasks finish and report; nothing new starts until StartProcessing. Idempotent.</summary>
        public void PauseProcessing()
        {
            ThrowIfDisposed();
            BtmException.ThrowIfFailed(NativeMethods.btm_pause_processing(handle), "btm_pause_processing");
        }

        /// <summary>Changes the maximum number of worker threads (0 means 8).</summary>
        public void SetMaxThreads(int maxThreads)
        {
            ThrowIfDisposed();
            BtmException.ThrowIfFailed(NativeMethods.btm_set_max_threads(handle, maxThreads), "btm_set_max_threads");
        }

        /// <summary>
        /// Shuts the manager down: stops every task (no event is raised again,
        /// not even for running tasks), rejects new tasks, and waits up to
        /// <paramref name="millisecondsTimeout"/> (Timeout.Infinite: no limit)
        /// for the worker threads to exit. Returns true when every worker
        /// exited (no managed task code runs any more; called from inside one
        /// of this manager's tasks, every other worker, and the calling task
        /// goes on to its end); false when some are
        /// still inside a task (<see cref="TasksStillRunningAtShutDown"/>):
        /// they finish alone and their delegates are freed then. A second call
        /// does not wait again and returns the first call's answer.
        /// </summary>
        public bool ShutDown(int millisecondsTimeout = Timeout.Infinite)
        {
            ThrowIfDisposed();
            return ShutDownCore(millisecondsTimeout);
        }

        /// <summary>Workers that were still inside a task when ShutDown timed out.</summary>
        public long TasksStillRunningAtShutDown
        {
            get { return Interlocked.Read(ref stillRunningAtShutDown); }
        }

        private bool ShutDownCore(int millisecondsTimeout)
        {
            uint timeout = ToNativeTimeout(millisecondsTimeout);
            UIntPtr stillRunning;
            BtmStatus status;
            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                status = NativeMethods.btm_shut_down(handle.DangerousGetHandle(), timeout, out stillRunning);
            }
            finally
            {
                if (added)
                {
                    handle.DangerousRelease();
                }
            }
            switch (status)
            {
                case BtmStatus.Ok:
                    Volatile.Write(ref shutDownState, 1);
                    shutDownAnswered.Set();
                    return true;
                case BtmStatus.TimedOut:
                    Interlocked.Exchange(ref stillRunningAtShutDown, (long)stillRunning.ToUInt64());
                    Volatile.Write(ref shutDownState, 2);
                    shutDownAnswered.Set();
                    return false;
                case BtmStatus.AlreadyShutDown:
                    // The first call may still be waiting for the workers (on
                    // another thread): its answer is not known yet. Wait for it,
                    // within this call's own timeout, so that a concurrent ShutDown
                    // or Dispose does not return while tasks still run. Not on a
                    // btm worker thread (a task, hook or callback): the first call
                    // may be waiting for that very worker.
                    if (!Bridge.IsWorkerThread)
                    {
                        shutDownAnswered.Wait(millisecondsTimeout);
                    }
                    return Volatile.Read(ref shutDownState) == 1;
                default:
                    shutDownAnswered.Set();
                    throw new BtmException(status, "btm_shut_down");
            }
        }

        // ------------------------------------------------------------------
        // Stops

        /// <summary>
        /// Stops a task (and, transitively, the tasks upstream / downstream of
        /// it). Stopped tasks raise no event, ever, after this returns; a
        /// running one runs to the end and its outcome is dropped. Unknown or
        /// finished ids are a no-op (an empty report).
        /// </summary>
        public StopReport StopTask(ulong taskId, bool stopUpstream = true, bool stopDownstream = true)
        {
            ThrowIfDisposed();
            BtmStopReport report;
            BtmStatus status = NativeMethods.btm_stop_task(handle, taskId, stopUpstream, stopDownstream, out report);
            return StopResult(status, report, "btm_stop_task");
        }

        /// <summary>Stops every live task of a group (spreading as StopTask does).</summary>
        public StopReport StopTaskGroup(TaskGroup group, bool stopUpstream = true, bool stopDownstream = true)
        {
            ThrowIfDisposed();
            BtmGroup nativeGroup = ToNative(group);
            BtmStopReport report;
            BtmStatus status = NativeMethods.btm_stop_task_group(handle, ref nativeGroup, stopUpstream, stopDownstream, out report);
            return StopResult(status, report, "btm_stop_task_group");
        }

        /// <summary>Stops every live task; the manager keeps working.</summary>
        public StopReport StopAllTasks()
        {
            ThrowIfDisposed();
            BtmStopReport report;
            BtmStatus status = NativeMethods.btm_stop_all_tasks(handle, out report);
            return StopResult(status, report, "btm_stop_all_tasks");
        }

        private static StopReport StopResult(BtmStatus status, BtmStopReport report, string what)
        {
            if (status == BtmStatus.NotFound)
            {
                return default(StopReport);
            }
            BtmException.ThrowIfFailed(status, what);
            return new StopReport(report);
        }

        // ------------------------------------------------------------------
        // Events

        /// <summary>
        /// Delivers pending events by raising TaskCompleted, TaskFailed,
        /// TaskGroupFinished and TaskProgress on the calling thread, in the order
        /// btm sees the state changes (each worker's tasks in the order they
        /// finished; two independent tasks that finished on different workers
        /// since the last poll come worker by worker, see the README), up to
        /// <paramref name="maxEvents"/> (e.g. a
        /// per-frame budget). Never blocks; returns the number delivered.
        ///
        /// Events are taken from btm one at a time, so a handler that stops a
        /// task (or disposes the manager) never sees an event of that task
        /// afterwards. An exception thrown by a handler propagates to the caller
        /// (the events after it stay queued for the next call).
        /// </summary>
        public int PollEvents(int maxEvents = int.MaxValue)
        {
            ThrowIfDisposed();
            lock (raiseLock)
            {
                return PollEventsLocked(maxEvents);
            }
        }

        private int PollEventsLocked(int maxEvents)
        {
            int delivered = 0;
            while (delivered < maxEvents)
            {
                ReceivedEvent ev;
                lock (pollLock)
                {
                    if (IsDisposed)
                    {
                        break;
                    }
                    UIntPtr count;
                    BtmException.ThrowIfFailed(NativeMethods.btm_poll_events(handle, eventBuffer, (UIntPtr)1, out count), "btm_poll_events");
                    if (count.ToUInt64() == 0)
                    {
                        break;
                    }
                    // Copy everything out now: the pointers are released by the next
                    // poll or by Dispose, which a handler may call.
                    ev = Read(ref eventBuffer[0]);
                }
                delivered++;
                Raise(ref ev);
            }
            return delivered;
        }

        /// <summary>
        /// Blocks until an event is pending (true) or the timeout passes or the
        /// manager is shut down (false). For hosts without a frame loop.
        /// </summary>
        public bool WaitForEvents(int millisecondsTimeout)
        {
            ThrowIfDisposed();
            BtmStatus status = NativeMethods.btm_wait_events(handle, ToNativeTimeout(millisecondsTimeout));
            if (status == BtmStatus.TimedOut || status == BtmStatus.ShutDown)
            {
                return false;
            }
            BtmException.ThrowIfFailed(status, "btm_wait_events");
            return true;
        }

        /// <summary>
        /// Blocks until no task is queued, blocked or running (true), or the
        /// timeout passes (false). Events may still be pending: poll them. From
        /// inside a task it throws (the manager cannot become idle).
        /// </summary>
        public bool WaitIdle(int millisecondsTimeout)
        {
            ThrowIfDisposed();
            BtmStatus status = NativeMethods.btm_wait_idle(handle, ToNativeTimeout(millisecondsTimeout));
            if (status == BtmStatus.TimedOut)
            {
                return false;
            }
            BtmException.ThrowIfFailed(status, "btm_wait_idle");
            return true;
        }

        /// <summary>A snapshot of the manager's counters.</summary>
        public ManagerStats GetStats()
        {
            ThrowIfDisposed();
            BtmStats stats;
            BtmException.ThrowIfFailed(NativeMethods.btm_get_stats(handle, out stats), "btm_get_stats");
            return new ManagerStats(stats);
        }

        /// <summary>Counts of one group's live tasks (all zero for an empty group).</summary>
        public GroupStats GetGroupStats(TaskGroup group)
        {
            ThrowIfDisposed();
            BtmGroup nativeGroup = ToNative(group);
            BtmGroupStats stats;
            BtmException.ThrowIfFailed(NativeMethods.btm_get_group_stats(handle, ref nativeGroup, out stats), "btm_get_group_stats");
            return new GroupStats(stats);
        }

        private struct ReceivedEvent
        {
            public BtmEventKind Kind;
            public ulong TaskId;
            public TaskGroup Group;
            public object Result;
            public string Message;
            public string Details;
            public double Progress;
        }

        private ReceivedEvent Read(ref BtmEvent e)
        {
            var ev = new ReceivedEvent
            {
                Kind = (BtmEventKind)e.kind,
                TaskId = e.task_id,
                Group = FromNative(ref e.group, e.group_name),
                Progress = e.progress,
            };
            switch (ev.Kind)
            {
                case BtmEventKind.TaskCompleted:
                    ev.Result = ReadResult(ref e);
                    break;
                case BtmEventKind.TaskFailed:
                case BtmEventKind.TaskProgress:
                    ev.Message = Utf8.FromNative(e.message);
                    ev.Details = Utf8.FromNative(e.details);
                    break;
            }
            return ev;
        }

        private object ReadResult(ref BtmEvent e)
        {
            int count = checked((int)e.result_count.ToUInt64());
            if (count == 0)
            {
                return null;
            }
            // A pass-through's first entry is always its marker payload.
            object first = Bridge.Target(System.Runtime.InteropServices.Marshal.ReadIntPtr(e.results, Bridge.DataOffset));
            var marker = first as PassThroughPayload;
            if (marker == null)
            {
                return first;
            }
            entryBuffer.Clear();
            Bridge.ReadEntries(e.results, count, entryBuffer);
            return new PassThroughResult(e.task_id, marker.Payload, entryBuffer.ToArray());
        }

        private void Raise(ref ReceivedEvent ev)
        {
            switch (ev.Kind)
            {
                case BtmEventKind.TaskCompleted:
                    {
                        TaskCompletedHandler h = TaskCompleted;
                        if (h != null)
                        {
                            h(ev.TaskId, ev.Group, ev.Result);
                        }
                        break;
                    }
                case BtmEventKind.TaskFailed:
                    {
                        TaskFailedHandler h = TaskFailed;
                        if (h != null)
                        {
                            h(ev.TaskId, ev.Group, ev.Message, ev.Details ?? string.Empty);
                        }
                        break;
                    }
                case BtmEventKind.GroupFinished:
                    {
                        TaskGroupFinishedHandler h = TaskGroupFinished;
                        if (h != null)
                        {
                            h(ev.Group);
                        }
                        break;
                    }
                case BtmEventKind.TaskProgress:
                    {
                        TaskProgressHandler h = TaskProgress;
                        if (h != null)
                        {
                            h(ev.TaskId, ev.Group, ev.Progress, ev.Message);
                        }
                        break;
                    }
                default:
                    // A kind this binding does not know (newer library): skip it.
                    break;
            }
        }

        // ------------------------------------------------------------------
        // Host integration: wake-ups and instrumentation

        /// <summary>
        /// Registers a callback that btm runs on a worker thread (or on the
        /// thread of the call that made an event available: an AddTask whose
        /// task fails at once, a PollEvents as it ends) when events
        /// become available (the queue goes from empty to non-empty), at most
        /// once until the next PollEvents; null removes it. It must only post a
        /// message to the host's loop (never poll there, never block). Drain
        /// completely after each call (PollEvents() without a limit), or no new
        /// call may come. If events are already pending when you register, no
        /// call may come for them: poll once (tasks that finished just before
        /// may instead make this call run it at once, on this thread).
        /// Exceptions it throws are dropped. When this call returns, the
        /// callback it replaced is not running on any thread and will not
        /// be called again (it waits for a call in progress; called from
        /// inside the callback or from a task, it does not wait).
        /// </summary>
        public void SetEventsAvailableCallback(Action callback)
        {
            ThrowIfDisposed();
            if (callback == null)
            {
                BtmException.ThrowIfFailed(NativeMethods.btm_set_notify(handle, null, IntPtr.Zero, null), "btm_set_notify");
                return;
            }
            IntPtr userdata = Bridge.Alloc(callback);
            BtmStatus status = BtmStatus.Panic;
            bool reachedNative = false;
            try
            {
                status = NativeMethods.btm_set_notify(handle, Bridge.NotifyFn, userdata, Bridge.FreeHandleFn);
                reachedNative = true;
            }
            finally
            {
                if (!reachedNative)
                {
                    Bridge.FreeHandle(userdata);
                }
            }
            BtmException.ThrowIfFailed(status, "btm_set_notify");
        }

        /// <summary>
        /// Delivers events through a SynchronizationContext (WinForms, WPF,
        /// Avalonia, Unity's UnitySynchronizationContext...): whenever events
        /// become available, a full PollEvents() is posted to
        /// <paramref name="context"/>, so handlers run on its thread without a
        /// polling loop. Null detaches. Replaces any SetEventsAvailableCallback.
        /// </summary>
        public void UseSynchronizationContext(SynchronizationContext context)
        {
            if (context == null)
            {
                SetEventsAvailableCallback(null);
                return;
            }
            // A weak reference: the registered callback must not keep a
            // forgotten manager alive.
            var weak = new WeakReference(this);
            SendOrPostCallback drain = state =>
            {
                var m = weak.Target as BackgroundTaskManager;
                if (m == null || m.IsDisposed)
                {
                    return;
                }
                bool completed = false;
                try
                {
                    m.PollEvents();
                    completed = true;
                }
                finally
                {
                    // A handler threw: the events after it are still queued and
                    // no new wake-up will come for them, so drain again later.
                    if (!completed && !m.IsDisposed)
                    {
                        context.Post((SendOrPostCallback)state, state);
                    }
                }
            };
            SetEventsAvailableCallback(() => context.Post(drain, drain));
            context.Post(drain, drain); // for events already pending
        }

        /// <summary>
        /// A file descriptor that is readable exactly while events are pending
        /// (Linux: an eventfd; other Unix systems: a pipe), for hosts with a
        /// poll/epoll loop. Never read from it or close it: PollEvents clears
        /// it, Dispose closes it. Unix only: on Windows it throws a
        /// BtmException with status Unsupported (see GetEventWaitHandle).
        /// </summary>
        public int GetEventFileDescriptor()
        {
            ThrowIfDisposed();
            int fd;
            BtmException.ThrowIfFailed(NativeMethods.btm_get_event_fd(handle, out fd), "btm_get_event_fd");
            return fd;
        }

        /// <summary>
        /// Windows: a WaitHandle signalled exactly while events are pending
        /// (btm's event object), for WaitHandle.WaitAny or
        /// ThreadPool.RegisterWaitForSingleObject (with executeOnlyOnce:
        /// true, registered again after PollEvents: it stays signalled until
        /// then). Never Set, Reset or close it: PollEvents resets it, Dispose
        /// closes it (disposing the returned WaitHandle does not), so keep
        /// this manager referenced and undisposed, and unregister every wait,
        /// while the handle is in use. Windows only: elsewhere it throws a
        /// BtmException with status Unsupported (see GetEventFileDescriptor).
        /// </summary>
        public WaitHandle GetEventWaitHandle()
        {
            ThrowIfDisposed();
            IntPtr raw;
            BtmException.ThrowIfFailed(NativeMethods.btm_get_event_handle(handle, out raw), "btm_get_event_handle");
            return new BorrowedWaitHandle(raw);
        }

        /// <summary>A WaitHandle over a handle btm owns: never closes it.</summary>
        private sealed class BorrowedWaitHandle : WaitHandle
        {
            internal BorrowedWaitHandle(IntPtr raw)
            {
                SafeWaitHandle = new Microsoft.Win32.SafeHandles.SafeWaitHandle(raw, false);
            }
        }

        /// <summary>
        /// Registers profiler hooks (both null removes them): run on the worker
        /// thread right before and right after each task's delegate (Unity:
        /// CustomSampler.Begin/End; Tracy zones...). Tasks already running keep
        /// the hooks they started with. Exceptions they throw are dropped.
        /// </summary>
        public void SetTaskHooks(TaskHook onStart, TaskHook onEnd)
        {
            ThrowIfDisposed();
            if (onStart == null && onEnd == null)
            {
                BtmException.ThrowIfFailed(NativeMethods.btm_set_task_hooks(handle, null, null, IntPtr.Zero, null), "btm_set_task_hooks");
                return;
            }
            IntPtr userdata = Bridge.Alloc(new TaskHooks(onStart, onEnd, groupNamesById));
            BtmStatus status = BtmStatus.Panic;
            bool reachedNative = false;
            try
            {
                status = NativeMethods.btm_set_task_hooks(handle, Bridge.TaskStartHookFn, Bridge.TaskEndHookFn, userdata, Bridge.FreeHandleFn);
                reachedNative = true;
            }
            finally
            {
                if (!reachedNative)
                {
                    Bridge.FreeHandle(userdata);
                }
            }
            BtmException.ThrowIfFailed(status, "btm_set_task_hooks");
        }

        /// <summary>Exceptions thrown (and dropped) by events-available callbacks and task hooks, over all managers.</summary>
        public static long DroppedCallbackExceptionCount
        {
            get { return Bridge.CallbackExceptions; }
        }

        // ------------------------------------------------------------------
        // Lifetime

        /// <summary>
        /// Shuts down (waiting for running tasks; call ShutDown(timeout) first to
        /// bound the wait) and releases the native manager, freeing every task
        /// delegate, payload and result it still holds. Idempotent; safe from an
        /// event handler or from inside a task.
        /// </summary>
        public void Dispose()
        {
            DisposeCore(Timeout.Infinite);
        }

        private void DisposeCore(int shutDownTimeout)
        {
            if (Interlocked.Exchange(ref disposed, 1) != 0)
            {
                return;
            }
            Unregister(this);
            try
            {
                if (!IsShutDown)
                {
                    // Also wakes any thread blocked in WaitForEvents, so that no
                    // call in flight keeps the handle (and btm_destroy) waiting.
                    ShutDownCore(shutDownTimeout);
                }
            }
            finally
            {
                lock (pollLock)
                {
                    handle.Dispose();
                }
            }
        }

        private void ThrowIfDisposed()
        {
            if (Volatile.Read(ref disposed) != 0)
            {
                throw new ObjectDisposedException("BackgroundTaskManager");
            }
        }

        // ------------------------------------------------------------------
        // Conversions

        private BtmGroup ToNative(TaskGroup group)
        {
            switch (group.Kind)
            {
                case TaskGroupKind.Numbered:
                    return new BtmGroup { kind = (uint)BtmGroupKind.Numbered, value = group.Number };
                case TaskGroupKind.Named:
                    ulong id;
                    if (!namedGroupIds.TryGetValue(group.Name, out id))
                    {
                        BtmGroup named;
                        // Exact conversion (TaskGroup.Named has already checked
                        // the name; checked again here so no lossy form of a name
                        // can ever be interned): a name btm would see differently
                        // throws ArgumentException before reaching btm.
                        byte[] nativeName = Utf8.NameToNative(group.Name, "group", "The group name");
                        BtmException.ThrowIfFailed(NativeMethods.btm_group_named(handle, nativeName, out named), "btm_group_named");
                        id = named.value;
                        namedGroupIds[group.Name] = id;
                        groupNamesById[id] = group.Name;
                    }
                    return new BtmGroup { kind = (uint)BtmGroupKind.Named, value = id };
                default:
                    return new BtmGroup { kind = (uint)BtmGroupKind.Default };
            }
        }

        private TaskGroup FromNative(ref BtmGroup group, IntPtr name)
        {
            switch ((BtmGroupKind)group.kind)
            {
                case BtmGroupKind.Numbered:
                    return TaskGroup.Numbered(group.value);
                case BtmGroupKind.Named:
                    string text;
                    if (!groupNamesById.TryGetValue(group.value, out text))
                    {
                        text = Utf8.FromNative(name) ?? string.Empty;
                        groupNamesById[group.value] = text;
                    }
                    return TaskGroup.Named(text);
                default:
                    return TaskGroup.Default;
            }
        }

        private static ulong[] ToArray(IEnumerable<ulong> ids)
        {
            if (ids == null)
            {
                return null;
            }
            ulong[] array = ids as ulong[] ?? ids.ToArray();
            return array.Length == 0 ? null : array;
        }

        private static UIntPtr Length(ulong[] array)
        {
            return (UIntPtr)(array == null ? 0u : (uint)array.Length);
        }

        private static uint ToNativeTimeout(int milliseconds)
        {
            if (milliseconds == Timeout.Infinite)
            {
                return NativeMethods.WaitForever;
            }
            if (milliseconds < 0)
            {
                throw new ArgumentOutOfRangeException("millisecondsTimeout", "must be >= 0 or Timeout.Infinite");
            }
            return (uint)milliseconds;
        }
    }
}
