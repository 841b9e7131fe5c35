using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using Btm;

namespace Btm.Tests
{
    public static class ManagerTests
    {
        // ------------------------------------------------------------------
        // Construction and basics

        [Test]
        public static void ConstructorRejectsBadThreadCounts()
        {
            BtmException ex = Check.Throws<BtmException>(() => new BackgroundTaskManager(-1), "maxThreads -1");
            Check.Equal(BtmStatus.InvalidThreadCount, ex.Status, "status");
            Check.True(ex.Message.Length > 0, "a message from btm_status_str");
            ex = Check.Throws<BtmException>(() => new BackgroundTaskManager(100000), "maxThreads 100000");
            Check.Equal(BtmStatus.InvalidThreadCount, ex.Status, "status");
            using (new BackgroundTaskManager(0))
            {
            }
        }

        [Test]
        public static void NullTaskIsRejectedWithoutLeaking()
        {
            using (var m = new BackgroundTaskManager(1))
            {
                Check.Throws<ArgumentNullException>(() => m.AddTask((Func<object>)null), "null Func<object>");
                Check.Throws<ArgumentNullException>(() => m.AddTask((Func<TaskContext, object>)null), "null Func<TaskContext, object>");
                Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "no handle allocated");
            }
        }

        [Test]
        public static void EventsAreRaisedOnThePollingThreadAndTasksOnWorkers()
        {
            var taskThreads = new ConcurrentBag<int>();
            using (var m = new BackgroundTaskManager(4, true))
            {
                var rec = new Recorder(m);
                var ids = new List<ulong>();
                for (int i = 0; i < 20; i++)
                {
                    int k = i;
                    ids.Add(m.AddTask(() =>
                    {
                        taskThreads.Add(Thread.CurrentThread.ManagedThreadId);
                        return k * 10;
                    }));
                }
                Wait.Polling(m, () => rec.HasAll(ids), "20 completions");
                int me = Thread.CurrentThread.ManagedThreadId;
                Check.SequenceEqual(new[] { me }, rec.HandlerThreads, "handler threads");
                Check.True(!taskThreads.Contains(me), "no task ran on the polling thread");
                for (int i = 0; i < 20; i++)
                {
                    Check.Equal((object)(i * 10), rec.Completed[ids[i]], "result of task " + i);
                }
            }
        }

        [Test]
        public static void ProcessingStartsPausedByDefaultAndPauseHolds()
        {
            using (var m = new BackgroundTaskManager(2))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => "a");
                Check.True(!m.WaitIdle(100), "a paused manager with a queued task is not idle");
                Check.Equal(1L, m.GetStats().Queued, "queued");
                m.StartProcessing();
                m.StartProcessing();
                Wait.Polling(m, () => rec.Has(a), "a completes after StartProcessing");
                m.PauseProcessing();
                m.PauseProcessing();
                ulong b = m.AddTask(() => "b");
                Check.True(!m.WaitIdle(100), "paused again: b stays queued");
                m.PollEvents();
                Check.True(!rec.Has(b), "b has not run");
                m.StartProcessing();
                Wait.Polling(m, () => rec.Has(b), "b completes");
            }
        }

        private static bool AllRunAtOnce(BackgroundTaskManager m, int n)
        {
            // n tasks that each wait (2 s at most) until all n are running at
            // the same time. Run one after the other, the first gives up and the
            // others do not wait.
            int arrived = 0;
            int gaveUp = 0;
            var rec = new Recorder(m);
            var ids = new List<ulong>();
            for (int i = 0; i < n; i++)
            {
                ids.Add(m.AddTask(() =>
                {
                    Interlocked.Increment(ref arrived);
                    if (Volatile.Read(ref gaveUp) == 0 && !Wait.Until(() => Volatile.Read(ref arrived) >= n, 2000))
                    {
                        Interlocked.Exchange(ref gaveUp, 1);
                    }
                }));
            }
            m.StartProcessing();
            Wait.Polling(m, () => rec.HasAll(ids), "all tasks");
            return Volatile.Read(ref gaveUp) == 0;
        }

        [Test]
        public static void TasksAddedWhileProcessingRunInParallel()
        {
            using (var m = new BackgroundTaskManager(4, true))
            {
                Check.True(AllRunAtOnce(m, 4), "4 tasks on 4 threads ran at the same time (threads: " + m.GetStats().Threads + ")");
            }
        }

        // Regression: btm once started a single worker when StartProcessing found
        // many queued tasks, so they ran one after the other.
        [Test]
        public static void TasksQueuedWhilePausedRunInParallelAfterStartProcessing()
        {
            using (var m = new BackgroundTaskManager(4))
            {
                Check.True(AllRunAtOnce(m, 4), "4 tasks queued while paused ran at the same time on 4 threads after StartProcessing (threads: " + m.GetStats().Threads + ")");
            }
        }

        // ------------------------------------------------------------------
        // Priorities

        [Test]
        public static void PrioritiesRunHighestFirstThenInOrderAdded()
        {
            var order = new ConcurrentQueue<string>();
            using (var m = new BackgroundTaskManager(1))
            {
                var rec = new Recorder(m);
                var ids = new List<ulong>();
                Func<string, Func<object>> task = label => () =>
                {
                    order.Enqueue(label);
                    return label;
                };
                ids.Add(m.AddTask(task("default-1")));
                ids.Add(m.AddTask(task("p5-1"), 5));
                ids.Add(m.AddTask(task("neg"), -3));
                ids.Add(m.AddTask(task("zero-2"), 0));
                ids.Add(m.AddTask(task("p10"), 10));
                ids.Add(m.AddTask(task("p5-2"), 5));
                ids.Add(m.AddTask(task("default-3")));
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(ids), "all tasks");
                Check.SequenceEqual(new[] { "p10", "p5-1", "p5-2", "default-1", "zero-2", "default-3", "neg" }, order, "run order");
            }
        }

        [Test]
        public static void SetTaskPriorityReordersQueuedTasks()
        {
            var order = new ConcurrentQueue<string>();
            using (var m = new BackgroundTaskManager(1))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => { order.Enqueue("a"); });
                ulong b = m.AddTask(() => { order.Enqueue("b"); });
                Check.True(m.SetTaskPriority(b, 10), "b is queued");
                Check.True(!m.SetTaskPriority(123456, 1), "unknown id");
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { a, b }), "a and b");
                Check.SequenceEqual(new[] { "b", "a" }, order, "order");
                Check.True(!m.SetTaskPriority(a, 1), "a finished and polled");
            }
        }

        // ------------------------------------------------------------------
        // Dependencies and results

        [Test]
        public static void DownstreamReceivesUpstreamResultsInCompletionOrder()
        {
            using (var m = new BackgroundTaskManager(1))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => 2);
                ulong b = m.AddTask(() => 3, 5); // runs (and completes) first
                IReadOnlyList<TaskResult> seen = null;
                ulong c = m.AddTask(ctx =>
                {
                    seen = ctx.UpstreamResults;
                    return ctx.GetUpstreamResult<int>(a) * 10 + ctx.GetUpstreamResult<int>(b);
                }, 100, default(TaskGroup), new[] { a, b });
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { a, b, c }), "a, b, c");
                Check.SequenceEqual(new ulong[] { b, a }, seen.Select(r => r.TaskId), "upstream ids in completion order");
                Check.SequenceEqual(new object[] { 3, 2 }, seen.Select(r => r.Value), "upstream values");
                Check.Equal((object)23, rec.Completed[c], "c's result");
                Check.SequenceEqual(new[] { "completed " + b, "completed " + a, "completed " + c, "group (default group)" }, rec.Log, "events");
            }
        }

        [Test]
        public static void DictionaryViewLetsTheLastCompletedUpstreamWin()
        {
            using (var m = new BackgroundTaskManager(1))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => new Dictionary<string, object> { { "x", "from a" }, { "a", 1 } });
                ulong b = m.AddTask(() => new Dictionary<string, object> { { "x", "from b" }, { "b", 2 } });
                ulong none = m.AddTask(() => null); // completes without a result: contributes nothing
                Dictionary<string, object> view = null;
                int entries = -1;
                ulong c = m.AddTask(ctx =>
                {
                    entries = ctx.UpstreamResults.Count;
                    view = ctx.GetUpstreamDictionary();
                }, 0, default(TaskGroup), new List<ulong> { b, none, a });
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { a, b, none, c }), "all");
                Check.Equal(2, entries, "entries (a null result gives none)");
                Check.Equal((object)"from b", view["x"], "b completed last and wins");
                Check.Equal((object)1, view["a"], "a's key");
                Check.Equal((object)2, view["b"], "b's key");
                Check.Equal(null, rec.Completed[none], "a null return is a completion with no result");
                Check.Equal(null, rec.Completed[c], "an Action task completes with no result");
            }
        }

        [Test]
        public static void UnknownUpstreamIsRejectedWithoutConsumingAnIdOrLeaking()
        {
            using (var m = new BackgroundTaskManager(1))
            {
                ulong a = m.AddTask(() => 1);
                BtmException ex = Check.Throws<BtmException>(() => m.AddTask(() => 2, 0, default(TaskGroup), new ulong[] { a + 1000 }), "never-issued upstream id");
                Check.Equal(BtmStatus.UnknownUpstream, ex.Status, "status");
                ex = Check.Throws<BtmException>(() => m.AddPassThroughTask(0, default(TaskGroup), new ulong[] { a + 1000 }, "payload"), "pass-through with never-issued upstream id");
                Check.Equal(BtmStatus.UnknownUpstream, ex.Status, "status");
                // Only a's delegate is still held: btm freed the rejected ones.
                Check.Equal(1L, BackgroundTaskManager.LiveGCHandleCount, "live handles");
                ulong b = m.AddTask(() => 3);
                Check.Equal(a + 1, b, "a rejected add issues no id");
            }
        }

        [Test]
        public static void DownstreamOfACompletedButUnpolledTaskStillGetsItsResult()
        {
            using (var m = new BackgroundTaskManager(2, true))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => "early");
                Check.True(m.WaitIdle(Wait.DefaultTimeoutMs), "a done (not polled)");
                object got = null;
                ulong b = m.AddTask(ctx => { got = ctx.GetUpstreamResult<string>(a); }, 0, default(TaskGroup), new[] { a });
                Wait.Polling(m, () => rec.HasAll(new[] { a, b }), "a and b");
                Check.Equal((object)"early", got, "b saw a's result");
            }
        }

        [Test]
        public static void TasksCanAddTasksFromInsideATask()
        {
            using (var m = new BackgroundTaskManager(2, true))
            {
                var rec = new Recorder(m);
                long child = 0;
                ulong parent = m.AddTask(() =>
                {
                    Interlocked.Exchange(ref child, (long)m.AddTask(() => 42, 0, "children"));
                    return "parent";
                });
                Wait.Polling(m, () => rec.Has(parent) && Interlocked.Read(ref child) != 0 && rec.Has((ulong)Interlocked.Read(ref child)), "parent and child");
                Check.Equal((object)42, rec.Completed[(ulong)child], "child's result");
                Check.True(rec.GroupsFinished.Contains("children"), "group children finished");
            }
        }

        // ------------------------------------------------------------------
        // Pass-through tasks

        [Test]
        public static void PassThroughGathersPayloadAndUpstreamResults()
        {
            using (var m = new BackgroundTaskManager(1))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => "a");
                ulong b = m.AddTask(() => "b");
                ulong p = m.AddPassThroughTask(0, default(TaskGroup), new[] { a, b }, "payload");
                IReadOnlyList<TaskResult> downstreamSaw = null;
                ulong d = m.AddTask(ctx => { downstreamSaw = ctx.UpstreamResults; return "d"; }, 0, default(TaskGroup), new[] { p });
                ulong empty = m.AddPassThroughTask();
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { a, b, p, d, empty }), "all");

                var result = rec.Completed[p] as PassThroughResult;
                Check.True(result != null, "a pass-through completes with a PassThroughResult");
                Check.Equal(p, result.TaskId, "its task id");
                Check.Equal((object)"payload", result.Payload, "payload");
                Check.SequenceEqual(new ulong[] { p, a, b }, result.Select(r => r.TaskId), "entry ids: payload first, then upstream in completion order");
                Check.SequenceEqual(new object[] { "payload", "a", "b" }, result.Select(r => r.Value), "entry values");
                Check.SequenceEqual(new ulong[] { p, a, b }, downstreamSaw.Select(r => r.TaskId), "the downstream task sees the same entries");

                var emptyResult = rec.Completed[empty] as PassThroughResult;
                Check.True(emptyResult != null, "an empty pass-through still gives a PassThroughResult");
                Check.Equal(0, emptyResult.Count, "no upstream, no payload: empty");
                Check.Equal(null, emptyResult.Payload, "no payload");
            }
        }

        [Test]
        public static void PassThroughDictionaryViewLetsUpstreamWinOverPayload()
        {
            using (var m = new BackgroundTaskManager(1))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => new Dictionary<string, object> { { "k", "upstream" } });
                ulong p = m.AddPassThroughTask(0, "sync", new[] { a }, new Dictionary<string, object> { { "k", "payload" }, { "only", "payload" } });
                Dictionary<string, object> downstreamView = null;
                ulong d = m.AddTask(ctx => { downstreamView = ctx.GetUpstreamDictionary(); }, 0, default(TaskGroup), new[] { p });
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { a, p, d }), "all");
                Dictionary<string, object> view = ((PassThroughResult)rec.Completed[p]).ToDictionary();
                Check.Equal((object)"upstream", view["k"], "upstream wins a key clash");
                Check.Equal((object)"payload", view["only"], "payload key kept");
                Check.Equal((object)"upstream", downstreamView["k"], "downstream view");
                Check.True(rec.GroupsFinished.Contains("sync"), "group sync finished");
            }
        }

        // ------------------------------------------------------------------
        // Failures

        private sealed class NastyException : Exception
        {
            public override string Message
            {
                get { throw new InvalidOperationException("Message throws"); }
            }

            public override string ToString()
            {
                throw new InvalidOperationException("ToString throws");
            }
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        private static void Thrower()
        {
            throw new InvalidOperationException("boom");
        }

        [Test]
        public static void ExceptionsBecomeFailuresThatCascadeDownstream()
        {
            using (var m = new BackgroundTaskManager(1))
            {
                var rec = new Recorder(m);
                TaskGroup g = m.NextGroupId();
                ulong bad = m.AddTask(() => { Thrower(); return 1; }, 0, g);
                ulong d1 = m.AddTask(() => 2, 0, g, new[] { bad });
                ulong d2 = m.AddTask(() => 3, 0, "other", new[] { d1 });
                ulong ok = m.AddTask(() => 4, 0, g);
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { bad, d1, d2, ok }), "all final events");

                string[] f = rec.Failed[bad];
                Check.Equal("boom", f[0], "message is Exception.Message");
                Check.True(f[1].StartsWith("System.InvalidOperationException: boom", StringComparison.Ordinal), "details is Exception.ToString(): " + f[1]);
                Check.True(f[1].Contains("Thrower"), "details has the stack trace: " + f[1]);
                Check.SequenceEqual(f, rec.Failed[d1], "d1 fails with the same message and details");
                Check.SequenceEqual(f, rec.Failed[d2], "d2 (transitively downstream) too");
                Check.True(rec.Completed.ContainsKey(ok), "an unrelated task completes");
                Check.Equal(1, rec.GroupsFinished.Count(x => x == g), "group finished once");
                Check.Equal(1, rec.GroupsFinished.Count(x => x == "other"), "other finished once");
            }
        }

        [Test]
        public static void EveryKindOfTaskDelegateReportsExceptions()
        {
            using (var m = new BackgroundTaskManager(2, true))
            {
                var rec = new Recorder(m);
                ulong f0 = m.AddTask(new Func<object>(() => { throw new ArgumentException("f0"); }));
                ulong f1 = m.AddTask(new Func<TaskContext, object>(ctx => { throw new ArgumentException("f1"); }));
                ulong a0 = m.AddTask(new Action(() => { throw new ArgumentException("a0"); }));
                ulong a1 = m.AddTask(new Action<TaskContext>(ctx => { throw new ArgumentException("a1"); }));
                ulong nasty = m.AddTask(new Action(() => { throw new NastyException(); }));
                ulong nullRef = m.AddTask(() => { object o = null; return o.ToString(); });
                Wait.Polling(m, () => rec.HasAll(new[] { f0, f1, a0, a1, nasty, nullRef }), "all failures");
                Check.Equal("f0", rec.Failed[f0][0], "Func<object>");
                Check.Equal("f1", rec.Failed[f1][0], "Func<TaskContext, object>");
                Check.Equal("a0", rec.Failed[a0][0], "Action");
                Check.Equal("a1", rec.Failed[a1][0], "Action<TaskContext>");
                Check.True(rec.Failed[nasty][0].Contains("NastyException"), "an exception whose Message and ToString throw still fails the task: " + rec.Failed[nasty][0]);
                Check.True(rec.Failed[nullRef][1].Contains("NullReferenceException"), "runtime exceptions too");
                Check.Equal(0, rec.Completed.Count, "nothing completed");
            }
        }

        [Test]
        public static void AnExceptionInAnEventHandlerPropagatesAndLaterEventsStayQueued()
        {
            using (var m = new BackgroundTaskManager(1))
            {
                var seen = new List<ulong>();
                bool throwNext = true;
                m.TaskCompleted += (id, g, r) =>
                {
                    seen.Add(id);
                    if (throwNext)
                    {
                        throwNext = false;
                        throw new InvalidOperationException("handler");
                    }
                };
                ulong a = m.AddTask(() => 1);
                ulong b = m.AddTask(() => 2);
                m.StartProcessing();
                Check.True(m.WaitIdle(Wait.DefaultTimeoutMs), "idle");
                Check.Throws<InvalidOperationException>(() => m.PollEvents(), "the handler's exception reaches the caller");
                Check.SequenceEqual(new[] { a }, seen, "stopped after the first event");
                Wait.Polling(m, () => seen.Count == 2, "b's event on the next poll");
                Check.SequenceEqual(new[] { a, b }, seen, "both, once each");
            }
        }

        // ------------------------------------------------------------------
        // Progress and context

        [Test]
        public static void ProgressIsReportedOnThePollingThread()
        {
            using (var m = new BackgroundTaskManager(1, true))
            {
                var rec = new Recorder(m);
                var progressSeen = new ManualResetEventSlim();
                string lastMessage = null;
                m.TaskProgress += (id, g, p, msg) =>
                {
                    lastMessage = msg;
                    if (p >= 0.5)
                    {
                        progressSeen.Set();
                    }
                };
                bool stoppedInside = true;
                ulong t = m.AddTask(ctx =>
                {
                    ctx.ReportProgress(0.25, "quarter");
                    ctx.ReportProgress(0.5, "half");
                    stoppedInside = ctx.IsStopped;
                    if (!progressSeen.Wait(Wait.DefaultTimeoutMs))
                    {
                        throw new TimeoutException("host never saw the progress");
                    }
                    return "done";
                });
                Wait.Polling(m, () => rec.Has(t), "t completes");
                Check.True(rec.Completed.ContainsKey(t), "t completed: " + string.Join("; ", rec.Log));
                Check.True(rec.Progress.Count >= 1 && rec.Progress.Last() == 0.5, "latest progress delivered: " + string.Join(",", rec.Progress));
                Check.Equal("half", lastMessage, "progress message");
                Check.True(!stoppedInside, "IsStopped false while not stopped");
                int lastProgress = rec.Log.FindLastIndex(l => l.StartsWith("progress", StringComparison.Ordinal));
                Check.True(lastProgress < rec.Log.IndexOf("completed " + t), "no progress after the final event");
            }
        }

        [Test]
        public static void TaskContextIsOnlyValidWhileItsTaskRuns()
        {
            using (var m = new BackgroundTaskManager(1, true))
            {
                var rec = new Recorder(m);
                TaskContext kept = null;
                ulong t = m.AddTask(ctx => { kept = ctx; return ctx.TaskId; });
                Wait.Polling(m, () => rec.Has(t), "t");
                Check.Equal((object)t, rec.Completed[t], "TaskId inside the task");
                Check.Equal(t, kept.TaskId, "TaskId stays readable");
                Check.Throws<InvalidOperationException>(() => { bool b = kept.IsStopped; }, "IsStopped after the task returned");
                Check.Throws<InvalidOperationException>(() => kept.ReportProgress(1.0), "ReportProgress after the task returned");
            }
        }

        // ------------------------------------------------------------------
        // Groups

        [Test]
        public static void GroupsFinishOncePerEmptying()
        {
            using (var m = new BackgroundTaskManager(2))
            {
                var rec = new Recorder(m);
                TaskGroup g1 = m.NextGroupId();
                TaskGroup g2 = m.NextGroupId();
                Check.True(g1 != g2 && g1.Kind == TaskGroupKind.Numbered, "NextGroupId gives new numbered groups");
                Check.True(TaskGroup.Named("1") != TaskGroup.Numbered(1), "named never equals numbered");
                var ids = new List<ulong>();
                for (int i = 0; i < 3; i++)
                {
                    ids.Add(m.AddTask(() => 1, 0, "thumbnails"));
                    ids.Add(m.AddTask(() => 2, 0, g1));
                }
                ids.Add(m.AddTask(() => 3));
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(ids) && rec.GroupsFinished.Count == 3, "all tasks and 3 group events");
                Check.Equal(1, rec.GroupsFinished.Count(g => g == "thumbnails"), "thumbnails finished once");
                Check.Equal(1, rec.GroupsFinished.Count(g => g == g1), "g1 finished once");
                Check.Equal(1, rec.GroupsFinished.Count(g => g.IsDefault), "default group finished once");
                Check.Equal("thumbnails", rec.GroupsFinished.First(g => g.Kind == TaskGroupKind.Named).Name, "name carried by the event");
                Check.Equal(0L, m.GetGroupStats("thumbnails").Total, "no live task left in the group");

                // Refilled, it finishes again.
                ulong again = m.AddTask(() => 4, 0, "thumbnails");
                Wait.Polling(m, () => rec.Has(again) && rec.GroupsFinished.Count == 4, "refilled group finishes again");
                Check.Equal((TaskGroup)"thumbnails", rec.GroupsFinished.Last(), "thumbnails again");
            }
        }

        [Test]
        public static void GroupEventsCarryTheTaskGroup()
        {
            using (var m = new BackgroundTaskManager(1, true))
            {
                var groups = new Dictionary<ulong, TaskGroup>();
                m.TaskCompleted += (id, g, r) => groups[id] = g;
                ulong named = m.AddTask(() => 1, 0, "io");
                ulong numbered = m.AddTask(() => 1, 0, TaskGroup.Numbered(77));
                ulong unicode = m.AddTask(() => 1, 0, "vignettes \u00e9\u4e2d");
                ulong def = m.AddTask(() => 1);
                Wait.Polling(m, () => groups.Count == 4, "four completions");
                Check.Equal((TaskGroup)"io", groups[named], "named");
                Check.Equal(TaskGroup.Numbered(77), groups[numbered], "numbered");
                Check.Equal((TaskGroup)"vignettes \u00e9\u4e2d", groups[unicode], "UTF-8 name round trip");
                Check.Equal(TaskGroup.Default, groups[def], "default");
            }
        }

        // Group names must reach btm exactly (one NUL-terminated UTF-8 string
        // per name): otherwise two different C# names could become one btm
        // group, and a stop of one would stop the other's tasks.
        private static void CheckNameRejected(BackgroundTaskManager m, string name, string what)
        {
            long handles = BackgroundTaskManager.LiveGCHandleCount;
            ArgumentException ex = Check.Throws<ArgumentException>(() => TaskGroup.Named(name), what + ": TaskGroup.Named");
            Check.Equal("name", ex.ParamName, what + ": parameter name");
            Check.True(!(ex is ArgumentNullException), what + ": not an ArgumentNullException");
            Check.True(ex.Message.Contains("group name") && ex.Message.Contains("index"), what + ": message says what and where: " + ex.Message);
            Check.Throws<ArgumentException>(() => { TaskGroup g = name; GC.KeepAlive(g); }, what + ": implicit conversion");
            Check.Throws<ArgumentException>(() => m.AddTask(() => 1, 0, name), what + ": AddTask");
            Check.Throws<ArgumentException>(() => m.AddPassThroughTask(0, name, null, "payload"), what + ": AddPassThroughTask");
            Check.Throws<ArgumentException>(() => m.AddTasks(new[] { new TaskSpec(() => 1), new TaskSpec(() => 2, 0, name) }), what + ": AddTasks");
            Check.Throws<ArgumentException>(() => m.StopTaskGroup(name), what + ": StopTaskGroup");
            Check.Throws<ArgumentException>(() => m.GetGroupStats(name), what + ": GetGroupStats");
            Check.Equal(handles, BackgroundTaskManager.LiveGCHandleCount, what + ": no handle allocated");

            // A group value that got past TaskGroup.Named (only reflection can
            // make one) is still refused by the manager before btm sees it.
            var ctor = typeof(TaskGroup).GetConstructor(
                System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance, null,
                new[] { typeof(TaskGroupKind), typeof(ulong), typeof(string) }, null);
            var forged = (TaskGroup)ctor.Invoke(new object[] { TaskGroupKind.Named, 0UL, name });
            ex = Check.Throws<ArgumentException>(() => m.AddTask(() => 1, 0, forged), what + ": forged group, AddTask");
            Check.Equal("group", ex.ParamName, what + ": forged group, parameter name");
            Check.Throws<ArgumentException>(() => m.AddTasks(new[] { new TaskSpec(() => 1, 0, "a"), new TaskSpec(() => 2, 0, forged) }), what + ": forged group, AddTasks");
            Check.Throws<ArgumentException>(() => m.StopTaskGroup(forged), what + ": forged group, StopTaskGroup");
            Check.Equal(handles, BackgroundTaskManager.LiveGCHandleCount, what + ": forged group, no handle left allocated");
        }

        private static void CheckNamesRejectedAndNothingAdded(string[] names)
        {
            using (var m = new BackgroundTaskManager(1))
            {
                ulong before = m.AddTask(() => 0, 0, "a");
                foreach (string name in names)
                {
                    CheckNameRejected(m, name, "\"" + name.Replace("\0", "\\0") + "\" (" + string.Join(" ", name.Select(c => ((int)c).ToString("X4"))) + ")");
                }
                ulong after = m.AddTask(() => 0, 0, "a");
                Check.Equal(before + 1, after, "no rejected call issued a task id");
                Check.Equal(2L, m.GetGroupStats("a").Total, "only the two valid tasks are live in \"a\"");
                Check.Equal(2L, m.GetStats().Queued, "only the two valid tasks are queued at all");
            }
        }

        [Test]
        public static void GroupNamesWithAnEmbeddedNulAreRejected()
        {
            CheckNamesRejectedAndNothingAdded(new[] { "a\0b", "a\0", "\0", "\0a", "thumbnails\0x" });
        }

        [Test]
        public static void GroupNamesWithALoneSurrogateAreRejected()
        {
            CheckNamesRejectedAndNothingAdded(new[]
            {
                "\uD800", "\uDC00", "\uDBFF", "\uDFFF",   // alone
                "a\uD83Db", "x\uD83D",                    // high surrogate not followed by a low one
                "a\uDE00b", "\uDE00\uD83D",               // low surrogate not preceded by a high one (a reversed pair)
                "\uD83D\uDE00\uDE00",                     // a valid pair, then a lone low surrogate
            });
        }

        [Test]
        public static void DistinctValidGroupNamesStayDistinctGroups()
        {
            var pairs = new[]
            {
                new[] { "\u00e9", "e\u0301" },           // precomposed vs combining: no normalisation
                new[] { "\uFFFD", "\uD83D\uDE00" },      // U+FFFD vs a surrogate pair (U+1F600)
                new[] { "a", "a b" },
                new[] { "", " " },
                new[] { "\u4e2d", "\u4e2d\u6587" },
            };
            foreach (string[] pair in pairs)
            {
                string what = "\"" + pair[0] + "\" vs \"" + pair[1] + "\"";
                using (var m = new BackgroundTaskManager(1, true))
                {
                    TaskGroup g1 = pair[0];
                    TaskGroup g2 = pair[1];
                    Check.True(g1 != g2, what + ": different values in C#");
                    var groups = new Dictionary<ulong, TaskGroup>();
                    m.TaskCompleted += (id, g, r) => groups[id] = g;

                    // g2 interned first, then g1, then g2 again.
                    ulong t2 = m.AddTask(() => 2, 0, g2);
                    Wait.Polling(m, () => groups.ContainsKey(t2), what + ": t2");
                    ulong t1 = m.AddTask(() => 1, 0, g1);
                    Wait.Polling(m, () => groups.ContainsKey(t1), what + ": t1");
                    ulong t2b = m.AddTask(() => 3, 0, g2);
                    Wait.Polling(m, () => groups.ContainsKey(t2b), what + ": t2b");
                    Check.Equal(g2, groups[t2], what + ": first g2 task reported in g2");
                    Check.Equal(g1, groups[t1], what + ": g1 task reported in g1");
                    Check.Equal(g2, groups[t2b], what + ": g2 task added after g1 was interned reported in g2");
                    Check.Equal(pair[1], groups[t2b].Name, what + ": exact name back");

                    // Stopping one group leaves the other's tasks alone.
                    m.PauseProcessing();
                    ulong q1 = m.AddTask(() => 4, 0, g1);
                    ulong q2 = m.AddTask(() => 5, 0, g2);
                    Check.Equal(1L, m.GetGroupStats(g1).Total, what + ": one live task in g1");
                    Check.Equal(1L, m.GetGroupStats(g2).Total, what + ": one live task in g2");
                    Check.Equal(1L, m.StopTaskGroup(g2).Total, what + ": StopTaskGroup(g2) stops g2's one task only");
                    Check.Equal(1L, m.GetGroupStats(g1).Total, what + ": g1's task is still live");
                    m.StartProcessing();
                    Wait.Polling(m, () => groups.ContainsKey(q1), what + ": g1's task still runs");
                    Wait.IdleAndDrained(m);
                    Check.Equal(g1, groups[q1], what + ": and is reported in g1");
                    Check.True(!groups.ContainsKey(q2), what + ": g2's stopped task raises no event");
                }
            }
        }

        [Test]
        public static void FreeTextMessagesAreConvertedLeniently()
        {
            // Failure and progress messages are free text, not names: a string
            // UTF-8 cannot carry exactly still gets through (the failure is
            // never lost), cut at an embedded '\0', lone surrogates as U+FFFD.
            using (var m = new BackgroundTaskManager(1, true))
            {
                var rec = new Recorder(m);
                string progressMessage = null;
                m.TaskProgress += (id, g, p, msg) => progressMessage = msg;
                ulong t = m.AddTask(ctx =>
                {
                    ctx.ReportProgress(0.5, "half \uD800way\0 hidden");
                    throw new InvalidOperationException("bad \uDC00 input\0 hidden");
                });
                Wait.Polling(m, () => rec.Has(t), "t fails");
                Check.True(rec.Failed.ContainsKey(t), "the failure is reported: " + string.Join("; ", rec.Log));
                Check.Equal("bad \uFFFD input", rec.Failed[t][0], "failure message");
                Check.Equal("half \uFFFDway", progressMessage, "progress message");
            }
        }

        // ------------------------------------------------------------------
        // Stops

        [Test]
        public static void StoppedQueuedTasksRaiseNoEvent()
        {
            using (var m = new BackgroundTaskManager(2))
            {
                var rec = new Recorder(m);
                var ran = new ConcurrentBag<string>();
                ulong a = m.AddTask(() => { ran.Add("a"); });
                ulong b = m.AddTask(() => { ran.Add("b"); }, 0, default(TaskGroup), new[] { a });
                ulong c = m.AddTask(() => { ran.Add("c"); });
                StopReport report = m.StopTask(a);
                Check.Equal(2L, report.BeforeStart, "a and its downstream b stopped before start");
                Check.Equal(0L, m.StopTask(a).Total, "stopping again finds nothing");
                Check.Equal(0L, m.StopTask(987654).Total, "unknown id is a no-op");
                m.StartProcessing();
                Wait.Polling(m, () => rec.Has(c), "c");
                Wait.IdleAndDrained(m);
                Check.True(!rec.TasksSeen.Contains(a) && !rec.TasksSeen.Contains(b), "no event for a or b");
                Check.SequenceEqual(new[] { "c" }, ran, "only c ran");
            }
        }

        [Test]
        public static void StopWithoutDownstreamLetsTheDownstreamRunWithoutTheResult()
        {
            using (var m = new BackgroundTaskManager(2))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => "a");
                int upstreamCount = -1;
                ulong b = m.AddTask(ctx => { upstreamCount = ctx.UpstreamResults.Count; }, 0, default(TaskGroup), new[] { a });
                Check.Equal(1L, m.StopTask(a, false, false).BeforeStart, "only a");
                m.StartProcessing();
                Wait.Polling(m, () => rec.Has(b), "b runs");
                Check.Equal(0, upstreamCount, "b ran without a's result");
                Check.True(!rec.TasksSeen.Contains(a), "no event for a");
            }
        }

        [Test]
        public static void StoppedRunningTaskKeepsRunningButItsOutcomeIsDropped()
        {
            using (var m = new BackgroundTaskManager(2, true))
            {
                var rec = new Recorder(m);
                var started = new ManualResetEventSlim();
                var gate = new ManualResetEventSlim();
                bool sawStopped = false;
                bool finished = false;
                ulong t = m.AddTask(ctx =>
                {
                    started.Set();
                    gate.Wait(Wait.DefaultTimeoutMs);
                    sawStopped = ctx.IsStopped;
                    bool reported = ctx.ReportProgress(1.0, "ignored");
                    finished = !reported;
                    throw new InvalidOperationException("this failure is dropped");
                }, 0, "g");
                Check.True(started.Wait(Wait.DefaultTimeoutMs), "task started");
                StopReport report = m.StopTask(t);
                Check.Equal(1L, report.WhileRunning, "stopped while running");
                gate.Set();
                Wait.IdleAndDrained(m);
                Check.True(finished, "the task ran to the end (ReportProgress returned false after the stop)");
                Check.True(sawStopped, "IsStopped was true inside the task");
                Check.Equal(0, rec.Log.Count, "no event at all: " + string.Join("; ", rec.Log));
            }
        }

        [Test]
        public static void StoppingAFinishedUnpolledTaskWithdrawsItsEvent()
        {
            using (var m = new BackgroundTaskManager(2, true))
            {
                var rec = new Recorder(m);
                ulong t = m.AddTask(() => "result nobody will see", 0, "g");
                Check.True(m.WaitIdle(Wait.DefaultTimeoutMs), "t finished");
                Check.Equal(1L, m.StopTask(t).AfterFinish, "stopped after finishing");
                Wait.IdleAndDrained(m);
                Check.Equal(0, rec.Log.Count, "no completed, no group finished: " + string.Join("; ", rec.Log));
            }
        }

        [Test]
        public static void StopFromAnEventHandlerSuppressesThatTasksPendingEvent()
        {
            using (var m = new BackgroundTaskManager(1, true))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => "a");
                ulong b = m.AddTask(() => "b");
                ulong c = m.AddTask(() => "c");
                Check.True(m.WaitIdle(Wait.DefaultTimeoutMs), "all three finished before any poll");
                m.TaskCompleted += (id, g, r) =>
                {
                    if (id == a)
                    {
                        m.StopTask(b);
                    }
                };
                Wait.IdleAndDrained(m);
                Check.True(rec.Completed.ContainsKey(a) && rec.Completed.ContainsKey(c), "a and c delivered");
                Check.True(!rec.TasksSeen.Contains(b), "b was stopped by a handler, after it finished: no event");
            }
        }

        [Test]
        public static void StopTaskGroupAndStopAllTasks()
        {
            using (var m = new BackgroundTaskManager(2))
            {
                var rec = new Recorder(m);
                var g = new List<ulong>();
                for (int i = 0; i < 3; i++)
                {
                    g.Add(m.AddTask(() => 1, 0, "doomed"));
                }
                ulong other = m.AddTask(() => 2, 0, "kept");
                Check.Equal(3L, m.StopTaskGroup("doomed").Total, "the group's three tasks");
                Check.Equal(0L, m.StopTaskGroup("never used").Total, "an empty group is a no-op");
                m.StartProcessing();
                Wait.Polling(m, () => rec.Has(other), "other completes");
                Wait.IdleAndDrained(m);
                Check.True(!g.Any(rec.TasksSeen.Contains), "no event for the stopped group");
                Check.SequenceEqual(new TaskGroup[] { "kept" }, rec.GroupsFinished, "only kept finished");

                m.PauseProcessing();
                var more = new List<ulong>();
                for (int i = 0; i < 10; i++)
                {
                    more.Add(m.AddTask(() => 3, i, i % 2 == 0 ? (TaskGroup)"x" : m.NextGroupId()));
                }
                Check.Equal(10L, m.StopAllTasks().Total, "stop all");
                m.StartProcessing();
                ulong after = m.AddTask(() => 4);
                Check.True(after > more.Max(), "ids are not reused after StopAllTasks");
                Wait.Polling(m, () => rec.Has(after), "the manager keeps working");
                Wait.IdleAndDrained(m);
                Check.True(!more.Any(rec.TasksSeen.Contains), "no event for tasks stopped by StopAllTasks");
            }
        }

        // ------------------------------------------------------------------
        // Shut down and Dispose

        [Test]
        public static void ShutDownWithRunningTasksDeliversNothingAndFreesEverything()
        {
            var gate = new ManualResetEventSlim();
            int running = 0;
            int returned = 0;
            var m = new BackgroundTaskManager(2, true);
            var rec = new Recorder(m);
            try
            {
                for (int i = 0; i < 2; i++)
                {
                    m.AddTask(() =>
                    {
                        Interlocked.Increment(ref running);
                        gate.Wait(Wait.DefaultTimeoutMs);
                        Interlocked.Increment(ref returned);
                        return "dropped";
                    });
                }
                for (int i = 0; i < 3; i++)
                {
                    m.AddTask(() => "never runs");
                }
                Wait.For(() => Volatile.Read(ref running) == 2, "both workers inside a task");
                Check.True(!m.ShutDown(200), "shut down times out while tasks run");
                Check.Equal(2L, m.TasksStillRunningAtShutDown, "two workers still running");
                Check.True(m.IsShutDown, "IsShutDown");
                // The 3 queued delegates are freed at once; the 2 running ones stay
                // alive until their task returns.
                Check.Equal(2L, BackgroundTaskManager.LiveGCHandleCount, "live handles while two tasks run");
                BtmException ex = Check.Throws<BtmException>(() => m.AddTask(() => 0), "add after shut down");
                Check.Equal(BtmStatus.ShutDown, ex.Status, "status");
                Check.Equal(2L, BackgroundTaskManager.LiveGCHandleCount, "the rejected task's handle was freed by btm");
                Check.True(!m.ShutDown(0), "a second ShutDown repeats the first answer");
                gate.Set();
                Wait.For(() => BackgroundTaskManager.LiveGCHandleCount == 0, "running tasks return and their delegates are freed on their workers");
                Check.Equal(2, Volatile.Read(ref returned), "both ran to the end");
                Check.Equal(0, m.PollEvents(), "no event after shut down");
                Check.Equal(0, rec.Log.Count, "nothing delivered");
            }
            finally
            {
                gate.Set();
                m.Dispose();
            }
        }

        [Test]
        public static void ShutDownWaitsForRunningTasksByDefault()
        {
            using (var m = new BackgroundTaskManager(2, true))
            {
                int events = 0;
                m.TaskCompleted += (id, g, r) => events++;
                m.TaskFailed += (id, g, msg, d) => events++;
                var started = new ManualResetEventSlim();
                bool returned = false;
                m.AddTask(ctx =>
                {
                    started.Set();
                    // Give up as soon as the shut down stops this task.
                    Wait.Until(() => ctx.IsStopped);
                    returned = true;
                });
                Check.True(started.Wait(Wait.DefaultTimeoutMs), "started");
                Check.True(m.ShutDown(), "every worker exited");
                Check.True(returned, "the running task returned before ShutDown did");
                Check.Equal(0, m.PollEvents(), "no event");
                Check.Equal(0, events, "no handler ran");
                Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "nothing left");
            }
        }

        [Test]
        public static void DisposeTwiceAndUseAfterDispose()
        {
            var m = new BackgroundTaskManager(2);
            m.AddTask(() => 1);                       // queued, never started
            m.AddPassThroughTask(0, "g", null, "p");  // queued pass-through with payload
            Check.Equal(2L, BackgroundTaskManager.LiveGCHandleCount, "two handles held by btm");
            m.Dispose();
            Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "Dispose frees queued delegates and payloads");
            m.Dispose();
            Check.True(m.IsDisposed, "IsDisposed");
            Check.Throws<ObjectDisposedException>(() => m.AddTask(() => 1), "AddTask after Dispose");
            Check.Throws<ObjectDisposedException>(() => m.PollEvents(), "PollEvents after Dispose");
            Check.Throws<ObjectDisposedException>(() => m.StopAllTasks(), "StopAllTasks after Dispose");
            Check.Throws<ObjectDisposedException>(() => m.ShutDown(), "ShutDown after Dispose");

            var n = new BackgroundTaskManager(1, true);
            Check.True(n.ShutDown(1000), "shut down first");
            n.Dispose();
            n.Dispose();
        }

        [Test]
        public static void DisposeFromAnEventHandlerEndsThePoll()
        {
            var m = new BackgroundTaskManager(1, true);
            int events = 0;
            m.TaskCompleted += (id, g, r) =>
            {
                events++;
                m.Dispose();
            };
            for (int i = 0; i < 5; i++)
            {
                m.AddTask(() => i);
            }
            Check.True(m.WaitIdle(Wait.DefaultTimeoutMs), "idle");
            Check.Equal(1, m.PollEvents(), "the poll ends after the handler disposed the manager");
            Check.Equal(1, events, "one event");
            Check.True(m.IsDisposed, "disposed");
        }

        [Test]
        public static void DisposeFromInsideATask()
        {
            var m = new BackgroundTaskManager(2, true);
            var done = new ManualResetEventSlim();
            Exception error = null;
            m.AddTask(() =>
            {
                try
                {
                    m.Dispose();
                }
                catch (Exception ex)
                {
                    error = ex;
                }
                done.Set();
            });
            Check.True(done.Wait(Wait.DefaultTimeoutMs), "the task disposed the manager and returned");
            Check.Equal(null, error, "no exception");
            Check.True(m.IsDisposed, "disposed");
            m.Dispose();
        }

        // ------------------------------------------------------------------
        // Accounting and volume

        [Test]
        public static void EveryGCHandleIsFreedWhateverTheTasksFate()
        {
            var gate = new ManualResetEventSlim();
            var started = new ManualResetEventSlim();
            using (var m = new BackgroundTaskManager(2))
            {
                var rec = new Recorder(m);
                ulong completed = m.AddTask(() => new byte[1000]);
                ulong noResult = m.AddTask(() => { });
                ulong failed = m.AddTask(() => { throw new Exception("x"); });
                ulong cascaded = m.AddTask(() => "never", 0, default(TaskGroup), new[] { failed });
                ulong consumer = m.AddTask(ctx => ctx.UpstreamResults.Count, 0, default(TaskGroup), new[] { completed });
                ulong passThrough = m.AddPassThroughTask(0, "pt", new[] { completed, consumer }, "payload");
                ulong stoppedQueued = m.AddTask(() => "stopped", -100);
                ulong stoppedPassThrough = m.AddPassThroughTask(-100, default(TaskGroup), null, "stopped payload");
                Check.Throws<BtmException>(() => m.AddTask(() => 1, 0, default(TaskGroup), new ulong[] { 999999 }), "rejected add");
                m.StopTask(stoppedQueued);
                m.StopTask(stoppedPassThrough);
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { completed, noResult, failed, cascaded, consumer, passThrough }), "final events");
                Check.Equal((object)1, rec.Completed[consumer], "consumer saw the result");

                ulong stoppedRunning = m.AddTask(() => { started.Set(); gate.Wait(Wait.DefaultTimeoutMs); return "dropped"; });
                Check.True(started.Wait(Wait.DefaultTimeoutMs), "started");
                m.StopTask(stoppedRunning);
                gate.Set();
                ulong stoppedFinished = m.AddTask(() => "withdrawn");
                m.AddTask(() => "left for Dispose"); // completes, never polled
                Check.True(m.WaitIdle(Wait.DefaultTimeoutMs), "idle");
                m.StopTask(stoppedFinished);
                Check.True(BackgroundTaskManager.LiveGCHandleCount > 0, "the unpolled result is still held");
            }
            Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "every handle freed after Dispose");
        }

        [Test]
        public static void ManyTasks100k()
        {
            const int N = 100000;
            long sum = 0;
            int completed = 0;
            using (var m = new BackgroundTaskManager(0, true))
            {
                m.TaskCompleted += (id, g, r) =>
                {
                    sum += (int)r;
                    completed++;
                };
                m.TaskFailed += (id, g, msg, details) => { throw new TestFailure("unexpected failure: " + details); };
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < N; i++)
                {
                    int k = i;
                    m.AddTask(() => k);
                    if ((i & 1023) == 0)
                    {
                        m.PollEvents();
                    }
                }
                long addedMs = sw.ElapsedMilliseconds;
                Wait.Polling(m, () => completed == N, N + " completions", 120000);
                sw.Stop();
                Check.Equal((long)N * (N - 1) / 2, sum, "sum of results");
                m.PollEvents(); // releases the last poll's result
                Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "no handle left after the last poll");
                ManagerStats s = m.GetStats();
                Check.Equal((long)N, s.CompletedTotal, "completed_total");
                Console.WriteLine("    100000 tasks (add + run + result GCHandle + poll on this thread): {0} ms total, adding took {1} ms, {2:F2} us/task, {3} worker threads",
                    sw.ElapsedMilliseconds, addedMs, sw.Elapsed.TotalMilliseconds * 1000.0 / N, s.Threads);
            }
        }
    }
}
