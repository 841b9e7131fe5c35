// BackgroundTaskManager.AddTasks (btm_add_tasks): one native call for a list
// of tasks, all of them or none.

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using Btm;

namespace Btm.Tests
{
    public static class AddTasksTests
    {
        [Test]
        public static void AddTasksReturnsIdsInOrderAndEveryTaskRuns()
        {
            var ran = new ConcurrentDictionary<int, int>();
            using (var m = new BackgroundTaskManager(4))
            {
                var rec = new Recorder(m);
                ulong before = m.AddTask(() => "before");
                var specs = new List<TaskSpec>();
                for (int i = 0; i < 40; i++)
                {
                    int k = i;
                    // Every kind of delegate.
                    switch (k % 4)
                    {
                        case 0:
                            specs.Add(new TaskSpec(() => { ran.TryAdd(k, 1); return k; }));
                            break;
                        case 1:
                            specs.Add(new TaskSpec(ctx => { ran.TryAdd(k, 1); return (object)ctx.TaskId; }));
                            break;
                        case 2:
                            specs.Add(new TaskSpec(() => { ran.TryAdd(k, 1); }));
                            break;
                        default:
                            specs.Add(new TaskSpec((TaskContext ctx) => { ran.TryAdd(k, 1); }));
                            break;
                    }
                }
                ulong[] ids = m.AddTasks(specs);
                ulong after = m.AddTask(() => "after");
                Check.Equal(40, ids.Length, "one id per task");
                Check.Equal(40L, BackgroundTaskManager.LiveGCHandleCount - 2, "one GCHandle per task, held by btm");
                Check.True(ids[0] > before, "ids follow the earlier task's");
                for (int i = 1; i < ids.Length; i++)
                {
                    Check.True(ids[i] > ids[i - 1], "ids increase in list order (" + ids[i - 1] + ", " + ids[i] + ")");
                }
                Check.True(after > ids[ids.Length - 1], "the next task's id follows the list's");
                Check.Equal(42L, m.GetStats().Queued, "queued while paused");

                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(ids) && rec.Has(before) && rec.Has(after), "every task's completed event");
                Check.Equal(40, ran.Count, "every task ran once");
                Check.Equal(0, rec.Failed.Count, "no failure");
                for (int i = 0; i < ids.Length; i++)
                {
                    object expected = (i % 4) == 0 ? (object)i : (i % 4) == 1 ? (object)ids[i] : null;
                    Check.Equal(expected, rec.Completed[ids[i]], "result of entry " + i + " (the context's TaskId is the returned id)");
                }
                Wait.IdleAndDrained(m);
                Check.Equal(42L, m.GetStats().CompletedTotal, "completed_total");
            }
        }

        [Test]
        public static void AddTasksHonoursPrioritiesGroupsAndUpstream()
        {
            var order = new ConcurrentQueue<string>();
            using (var m = new BackgroundTaskManager(1))
            {
                var rec = new Recorder(m);
                var groups = new ConcurrentDictionary<ulong, TaskGroup>();
                m.TaskCompleted += (id, g, r) => groups[id] = g;
                Func<string, Func<object>> task = label => () =>
                {
                    order.Enqueue(label);
                    return label;
                };
                TaskGroup numbered = TaskGroup.Numbered(7);
                ulong a = m.AddTask(task("a"));
                string seen = null;
                ulong[] ids = m.AddTasks(new[]
                {
                    new TaskSpec(task("low"), -3, "bulk"),
                    new TaskSpec(task("high"), 10, "bulk"),
                    new TaskSpec(task("mid"), 5, numbered),
                    // Blocked until a completes, then first of all (priority 100).
                    new TaskSpec(ctx =>
                    {
                        order.Enqueue("down");
                        seen = ctx.GetUpstreamResult<string>(a);
                        return "down";
                    }, 100, "bulk", new[] { a }),
                    new TaskSpec(task("mid-2"), 5, numbered),
                });
                GroupStats bulk = m.GetGroupStats("bulk");
                Check.Equal(2L, bulk.Queued, "bulk: queued");
                Check.Equal(1L, bulk.Blocked, "bulk: blocked on a");
                Check.Equal(2L, m.GetGroupStats(numbered).Queued, "numbered group: queued");

                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(ids) && rec.Has(a), "every task");
                Wait.IdleAndDrained(m);
                Check.SequenceEqual(new[] { "high", "mid", "mid-2", "a", "down", "low" }, order, "run order: priority, then order added; down after a");
                Check.Equal("a", seen, "down read a's result");
                Check.Equal((TaskGroup)"bulk", groups[ids[0]], "low's group");
                Check.Equal((TaskGroup)"bulk", groups[ids[3]], "down's group");
                Check.Equal(numbered, groups[ids[2]], "mid's group");
                Check.Equal(TaskGroup.Default, groups[a], "a's group");
                Check.Equal(1, rec.GroupsFinished.Count(g => g == "bulk"), "bulk finished once");
                Check.Equal(1, rec.GroupsFinished.Count(g => g == numbered), "the numbered group finished once");
            }
        }

        [Test]
        public static void AddTasksGivesEachEntryItsOwnUpstreamIds()
        {
            using (var m = new BackgroundTaskManager(2))
            {
                var rec = new Recorder(m);
                ulong[] first = m.AddTasks(Enumerable.Range(0, 6).Select(i => new TaskSpec(() => i)).ToList());
                var upstreamOf = new ulong[][]
                {
                    new[] { first[0], first[1] },
                    null,
                    new[] { first[5] },
                    new ulong[0],
                    new[] { first[4], first[2], first[3], first[0] },
                    new[] { first[1] },
                };
                var seen = new ConcurrentDictionary<int, ulong[]>();
                var specs = new List<TaskSpec>();
                for (int i = 0; i < upstreamOf.Length; i++)
                {
                    int k = i;
                    // A List for one entry: any IEnumerable<ulong> is accepted.
                    IEnumerable<ulong> upstream = k == 5 ? new List<ulong>(upstreamOf[k]) : (IEnumerable<ulong>)upstreamOf[k];
                    specs.Add(new TaskSpec(ctx =>
                    {
                        seen[k] = ctx.UpstreamResults.Select(r => r.TaskId).OrderBy(x => x).ToArray();
                        return ctx.UpstreamResults.Sum(r => (int)r.Value);
                    }, 0, default(TaskGroup), upstream));
                }
                ulong[] second = m.AddTasks(specs);
                ManagerStats stats = m.GetStats();
                Check.Equal(4L, stats.Blocked, "the four entries with upstream ids wait for them");
                Check.Equal(8L, stats.Queued, "the first list and the two entries without upstream ids are queued");
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(first) && rec.HasAll(second), "both lists");
                for (int i = 0; i < upstreamOf.Length; i++)
                {
                    ulong[] expected = (upstreamOf[i] ?? new ulong[0]).OrderBy(x => x).ToArray();
                    Check.SequenceEqual(expected, seen[i], "entry " + i + "'s upstream ids");
                    int sum = (upstreamOf[i] ?? new ulong[0]).Sum(id => Array.IndexOf(first, id));
                    Check.Equal((object)sum, rec.Completed[second[i]], "entry " + i + "'s sum of upstream results");
                }
            }
        }

        [Test]
        public static void AddTasksWithPassThroughEntries()
        {
            using (var m = new BackgroundTaskManager(1))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => "a");
                ulong b = m.AddTask(() => "b");
                ulong[] ids = m.AddTasks(new[]
                {
                    TaskSpec.PassThrough(0, "pt", new[] { a, b }, "payload"),
                    new TaskSpec(() => "plain"),
                    TaskSpec.PassThrough(),
                });
                Check.True(TaskSpec.PassThrough().IsPassThrough && !new TaskSpec(() => 1).IsPassThrough, "IsPassThrough");
                ulong p = ids[0];
                IReadOnlyList<TaskResult> downstreamSaw = null;
                ulong d = m.AddTask(ctx => { downstreamSaw = ctx.UpstreamResults; }, 0, default(TaskGroup), new[] { p });
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(ids) && rec.HasAll(new[] { a, b, d }), "all");

                var result = rec.Completed[p] as PassThroughResult;
                Check.True(result != null, "the pass-through entry completes with a PassThroughResult");
                Check.Equal(p, result.TaskId, "its task id");
                Check.Equal((object)"payload", result.Payload, "payload");
                Check.SequenceEqual(new ulong[] { p, a, b }, result.Select(r => r.TaskId), "entry ids: payload first, then upstream in completion order");
                Check.SequenceEqual(new object[] { "payload", "a", "b" }, result.Select(r => r.Value), "entry values");
                Check.SequenceEqual(new ulong[] { p, a, b }, downstreamSaw.Select(r => r.TaskId), "the downstream task sees the same entries");
                Check.Equal((object)"plain", rec.Completed[ids[1]], "the plain entry's result");
                var empty = rec.Completed[ids[2]] as PassThroughResult;
                Check.True(empty != null && empty.Count == 0 && empty.Payload == null, "an empty pass-through entry");
                Check.True(rec.GroupsFinished.Contains("pt"), "group pt finished");
            }
        }

        [Test]
        public static void AddTasksIsAllOrNothingAndLeaksNoGCHandle()
        {
            int rejectedRan = 0;
            using (var m = new BackgroundTaskManager(2))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => 1);
                Check.Equal(1L, BackgroundTaskManager.LiveGCHandleCount, "a's delegate");
                Action rejected = () => Interlocked.Increment(ref rejectedRan);

                // An unknown upstream id in the third entry of five.
                BtmException ex = Check.Throws<BtmException>(() => m.AddTasks(new[]
                {
                    new TaskSpec(rejected),
                    TaskSpec.PassThrough(0, "g", new[] { a }, "payload"),
                    new TaskSpec(rejected, 0, default(TaskGroup), new[] { a, a + 1000 }),
                    new TaskSpec(rejected, 5, "g"),
                    TaskSpec.PassThrough(),
                }), "a never-issued upstream id");
                Check.Equal(BtmStatus.UnknownUpstream, ex.Status, "status");
                Check.Equal(1L, BackgroundTaskManager.LiveGCHandleCount, "btm freed the five rejected handles (only a's is left)");

                // An entry waiting for an earlier entry of the same list by the id
                // it will get (not by TaskSpec.InBatch): that id is not issued
                // before the call, so the list is rejected.
                ex = Check.Throws<BtmException>(() => m.AddTasks(new[]
                {
                    new TaskSpec(rejected),
                    new TaskSpec(rejected, 0, default(TaskGroup), new[] { a + 1 }),
                }), "an upstream id from the same list");
                Check.Equal(BtmStatus.UnknownUpstream, ex.Status, "status");
                Check.Equal(1L, BackgroundTaskManager.LiveGCHandleCount, "live handles after the second rejection");

                ManagerStats stats = m.GetStats();
                Check.Equal(1L, stats.Queued + stats.Blocked, "nothing of either list was added");
                Check.Equal(0L, m.GetGroupStats("g").Total, "group g is empty");

                ulong b = m.AddTask(() => 2);
                Check.Equal(a + 1, b, "the rejected lists issued no id");
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { a, b }), "a and b");
                Wait.IdleAndDrained(m);
                Check.Equal(0, Volatile.Read(ref rejectedRan), "no rejected task ran");
                Check.SequenceEqual(new[] { a, b }, rec.TasksSeen.OrderBy(x => x), "events only for a and b");
                Check.True(!rec.GroupsFinished.Contains("g"), "no group finished for g");
                Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "nothing held after the last poll");

                Check.True(m.ShutDown(Wait.DefaultTimeoutMs), "shut down");
                ex = Check.Throws<BtmException>(() => m.AddTasks(new[] { new TaskSpec(rejected), TaskSpec.PassThrough(0, default(TaskGroup), null, "p") }), "AddTasks after ShutDown");
                Check.Equal(BtmStatus.ShutDown, ex.Status, "status");
                Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "btm freed the handles of the list rejected after shut down");
            }
            Check.Equal(0, rejectedRan, "no rejected task ran");
        }

        [Test]
        public static void AddTasksChainAndFanInWithinOneList()
        {
            const int ChainLength = 50;
            using (var gate = new ManualResetEventSlim(false))
            using (var m = new BackgroundTaskManager(4, true))
            {
                var rec = new Recorder(m);
                var order = new ConcurrentQueue<int>();
                // Added before the list, held until the chain is done: the fan-in
                // waits for it as well as for entries of the list.
                ulong before = m.AddTask(() =>
                {
                    gate.Wait();
                    order.Enqueue(-1);
                    return "before";
                });
                try
                {
                    var chainSaw = new ConcurrentDictionary<int, ulong[]>();
                    var specs = new List<TaskSpec>();
                    for (int i = 0; i < ChainLength; i++)
                    {
                        int k = i;
                        // Entry k waits for entry k - 1 (the first for nothing).
                        specs.Add(new TaskSpec(ctx =>
                        {
                            chainSaw[k] = ctx.UpstreamResults.Select(r => r.TaskId).ToArray();
                            int previous = k == 0 ? 0 : (int)ctx.UpstreamResults.Single().Value;
                            order.Enqueue(k);
                            return previous + k;
                        }, 0, "chain", k == 0 ? null : new[] { TaskSpec.InBatch(k - 1) }));
                    }
                    int[] fanInFrom = { 49, 0, 24 };
                    const int FanIn = ChainLength;
                    IReadOnlyList<TaskResult> fanInSaw = null;
                    specs.Add(new TaskSpec(ctx =>
                    {
                        fanInSaw = ctx.UpstreamResults;
                        order.Enqueue(FanIn);
                        return "fan-in";
                    }, 0, default(TaskGroup), new[] { TaskSpec.InBatch(fanInFrom[0]), before, TaskSpec.InBatch(fanInFrom[1]), TaskSpec.InBatch(fanInFrom[2]) }));
                    Check.SequenceEqual(new[] { TaskSpec.InBatch(49), before, TaskSpec.InBatch(0), TaskSpec.InBatch(24) }, specs[FanIn].UpstreamTaskIds, "the spec keeps the InBatch ids as given");

                    ulong[] ids = m.AddTasks(specs);
                    Check.Equal(ChainLength + 1, ids.Length, "one id per entry");
                    for (int i = 0; i < ids.Length; i++)
                    {
                        Check.Equal(ids[0] + (ulong)i, ids[i], "the ids of one list are consecutive (entry " + i + ")");
                        Check.True((ids[i] & (1UL << 63)) == 0, "an issued id never has the InBatch bit");
                    }
                    Check.True(ids[0] > before, "the list's ids follow the earlier task's");

                    Wait.Polling(m, () => rec.HasAll(ids.Take(ChainLength)), "the whole chain");
                    Check.True(!rec.Has(ids[FanIn]) && !rec.Has(before), "the fan-in waits for the held task");
                    Check.Equal(1L, m.GetStats().Blocked, "the fan-in is blocked");
                    gate.Set();
                    Wait.Polling(m, () => rec.Has(ids[FanIn]) && rec.Has(before), "the held task and the fan-in");
                    Wait.IdleAndDrained(m);
                    Check.Equal(0, rec.Failed.Count, "no failure");

                    // Run order: each after the one it waits for.
                    int[] ran = order.ToArray();
                    Check.Equal(ChainLength + 2, ran.Length, "every task ran once");
                    Func<int, int> at = k => Array.IndexOf(ran, k);
                    for (int i = 1; i < ChainLength; i++)
                    {
                        Check.True(at(i - 1) < at(i), "chain entry " + i + " ran after entry " + (i - 1));
                    }
                    foreach (int j in fanInFrom)
                    {
                        Check.True(at(j) < at(FanIn), "the fan-in ran after entry " + j);
                    }
                    Check.True(at(-1) < at(FanIn), "the fan-in ran after the task added before");
                    Check.Equal(FanIn, ran[ran.Length - 1], "the fan-in ran last");

                    // What each saw, by the real ids AddTasks returned.
                    Check.Equal(0, chainSaw[0].Length, "chain entry 0 has no upstream");
                    for (int i = 1; i < ChainLength; i++)
                    {
                        Check.SequenceEqual(new[] { ids[i - 1] }, chainSaw[i], "chain entry " + i + "'s upstream id");
                        Check.Equal((object)(i * (i + 1) / 2), rec.Completed[ids[i]], "chain entry " + i + "'s result (the running sum)");
                    }
                    var expectedFanIn = new Dictionary<ulong, object>
                    {
                        { ids[49], 49 * 50 / 2 },
                        { ids[0], 0 },
                        { ids[24], 24 * 25 / 2 },
                        { before, "before" },
                    };
                    Check.SequenceEqual(expectedFanIn.Keys.OrderBy(x => x), fanInSaw.Select(r => r.TaskId).OrderBy(x => x), "the fan-in's upstream ids: the real ids of entries 49, 0, 24 and the earlier task");
                    foreach (TaskResult r in fanInSaw)
                    {
                        Check.Equal(expectedFanIn[r.TaskId], r.Value, "the fan-in's upstream result of task " + r.TaskId);
                    }
                    Check.Equal(before, fanInSaw.Last().TaskId, "the held task completed last of the fan-in's upstream");
                    Check.Equal((object)"fan-in", rec.Completed[ids[FanIn]], "the fan-in's result");
                    Check.True(rec.GroupsFinished.Contains("chain"), "group chain finished");
                    Check.Equal((long)ChainLength + 2, m.GetStats().CompletedTotal, "completed_total");
                }
                finally
                {
                    // Whatever failed, the held task must end for Dispose to return.
                    gate.Set();
                }
            }
        }

        [Test]
        public static void AddTasksRejectsAnInBatchIndexNotBelowItsOwn()
        {
            int rejectedRan = 0;
            using (var m = new BackgroundTaskManager(2))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => 1);
                Check.Equal(1L, BackgroundTaskManager.LiveGCHandleCount, "a's delegate");
                Action rejected = () => Interlocked.Increment(ref rejectedRan);

                var lists = new KeyValuePair<string, TaskSpec[]>[]
                {
                    new KeyValuePair<string, TaskSpec[]>("an entry naming itself", new[]
                    {
                        new TaskSpec(rejected),
                        new TaskSpec(rejected, 0, "g", new[] { a, TaskSpec.InBatch(1) }),
                        new TaskSpec(rejected),
                    }),
                    new KeyValuePair<string, TaskSpec[]>("an entry naming a later one", new[]
                    {
                        new TaskSpec(rejected),
                        TaskSpec.PassThrough(0, "g", new[] { TaskSpec.InBatch(2) }, "payload"),
                        new TaskSpec(rejected, 0, "g"),
                    }),
                    new KeyValuePair<string, TaskSpec[]>("the first entry naming itself", new[]
                    {
                        new TaskSpec(rejected, 0, "g", new[] { TaskSpec.InBatch(0) }),
                    }),
                    new KeyValuePair<string, TaskSpec[]>("an index past the list, after valid InBatch entries", new[]
                    {
                        new TaskSpec(rejected, 0, "g"),
                        new TaskSpec(rejected, 0, "g", new[] { TaskSpec.InBatch(0) }),
                        TaskSpec.PassThrough(0, "g", new[] { TaskSpec.InBatch(1), a }, "payload"),
                        new TaskSpec(rejected, 0, "g", new[] { TaskSpec.InBatch(1000) }),
                    }),
                };
                foreach (KeyValuePair<string, TaskSpec[]> list in lists)
                {
                    BtmException ex = Check.Throws<BtmException>(() => m.AddTasks(list.Value), list.Key);
                    Check.Equal(BtmStatus.UnknownUpstream, ex.Status, list.Key + ": status");
                    Check.Equal(1L, BackgroundTaskManager.LiveGCHandleCount, list.Key + ": btm freed every rejected handle (only a's is left)");
                    ManagerStats stats = m.GetStats();
                    Check.Equal(1L, stats.Queued + stats.Blocked, list.Key + ": nothing of the list was added");
                    Check.Equal(0L, m.GetGroupStats("g").Total, list.Key + ": group g is empty");
                }
                Check.Throws<ArgumentOutOfRangeException>(() => TaskSpec.InBatch(-1), "a negative index");
                Check.Equal(1UL << 63, TaskSpec.InBatch(0), "InBatch(0) is BTM_IN_BATCH");
                Check.Equal((1UL << 63) | int.MaxValue, TaskSpec.InBatch(int.MaxValue), "InBatch(int.MaxValue)");

                ulong b = m.AddTask(() => 2);
                Check.Equal(a + 1, b, "the rejected lists issued no id");
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { a, b }), "a and b");
                Wait.IdleAndDrained(m);
                Check.Equal(0, Volatile.Read(ref rejectedRan), "no rejected task ran");
                Check.SequenceEqual(new[] { a, b }, rec.TasksSeen.OrderBy(x => x), "events only for a and b");
                Check.True(!rec.GroupsFinished.Contains("g"), "no group finished for g");
                Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "nothing held after the last poll");
            }
            Check.Equal(0, rejectedRan, "no rejected task ran");
        }

        [Test]
        public static void AddTaskRejectsAnInBatchUpstreamId()
        {
            int rejectedRan = 0;
            using (var m = new BackgroundTaskManager(1))
            {
                var rec = new Recorder(m);
                ulong a = m.AddTask(() => 1);
                BtmException ex = Check.Throws<BtmException>(() => m.AddTask(() => { Interlocked.Increment(ref rejectedRan); }, 0, "g", new[] { TaskSpec.InBatch(0) }), "AddTask with upstream InBatch(0)");
                Check.Equal(BtmStatus.UnknownUpstream, ex.Status, "AddTask: status");
                ex = Check.Throws<BtmException>(() => m.AddTask(() => { Interlocked.Increment(ref rejectedRan); }, 0, "g", new[] { a, TaskSpec.InBatch(0) }), "AddTask with upstream a and InBatch(0)");
                Check.Equal(BtmStatus.UnknownUpstream, ex.Status, "AddTask with a known id too: status");
                ex = Check.Throws<BtmException>(() => m.AddPassThroughTask(0, "g", new[] { TaskSpec.InBatch(0) }, "payload"), "AddPassThroughTask with upstream InBatch(0)");
                Check.Equal(BtmStatus.UnknownUpstream, ex.Status, "AddPassThroughTask: status");
                Check.Equal(1L, BackgroundTaskManager.LiveGCHandleCount, "btm freed the rejected handles (only a's is left)");
                ManagerStats stats = m.GetStats();
                Check.Equal(1L, stats.Queued + stats.Blocked, "nothing was added");
                Check.Equal(0L, m.GetGroupStats("g").Total, "group g is empty");

                ulong b = m.AddTask(() => 2);
                Check.Equal(a + 1, b, "the rejected adds issued no id");
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { a, b }), "a and b");
                Wait.IdleAndDrained(m);
                Check.SequenceEqual(new[] { a, b }, rec.TasksSeen.OrderBy(x => x), "events only for a and b");
                Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "nothing held after the last poll");
            }
            Check.Equal(0, rejectedRan, "no rejected task ran");
        }

        [Test]
        public static void AddTasksRejectsBadArgumentsBeforeAllocatingAnything()
        {
            using (var m = new BackgroundTaskManager(1))
            {
                Check.Throws<ArgumentNullException>(() => m.AddTasks(null), "null list");
                Check.Throws<ArgumentNullException>(() => new TaskSpec((Func<object>)null), "null Func<object>");
                Check.Throws<ArgumentNullException>(() => new TaskSpec((Action<TaskContext>)null), "null Action<TaskContext>");
                ArgumentException ex = Check.Throws<ArgumentException>(() => m.AddTasks(new[] { new TaskSpec(() => 1), TaskSpec.PassThrough(0, default(TaskGroup), null, "p"), default(TaskSpec) }), "default(TaskSpec) entry");
                Check.True(ex.Message.Contains("tasks[2]"), "the message names the entry: " + ex.Message);
                Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "no handle allocated");
                Check.Equal(0L, m.GetStats().Queued, "nothing added");
                m.Dispose();
                Check.Throws<ObjectDisposedException>(() => m.AddTasks(new[] { new TaskSpec(() => 1) }), "AddTasks after Dispose");
                Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "no handle allocated after Dispose");
            }
        }

        [Test]
        public static void AddTasksWithAnEmptyListAddsNothing()
        {
            using (var m = new BackgroundTaskManager(1, true))
            {
                var rec = new Recorder(m);
                ulong first = m.AddTask(() => "first");
                Wait.Polling(m, () => rec.Has(first), "first");
                Check.Equal(0, m.AddTasks(new TaskSpec[0]).Length, "empty array");
                Check.Equal(0, m.AddTasks(new List<TaskSpec>()).Length, "empty List");
                ManagerStats stats = m.GetStats();
                Check.Equal(0L, stats.Queued + stats.Blocked + stats.Running, "nothing added");
                Check.Equal(1L, stats.CompletedTotal, "only first ran");
                ulong a = m.AddTask(() => "a");
                Check.Equal(first + 1, a, "no id was issued by the empty lists");
                Wait.Polling(m, () => rec.Has(a), "the manager works on");
            }
        }

        [Test]
        public static void AddTasksFromInsideATask()
        {
            using (var m = new BackgroundTaskManager(2, true))
            {
                var rec = new Recorder(m);
                ulong[] children = null;
                ulong parent = m.AddTask(() =>
                {
                    Volatile.Write(ref children, m.AddTasks(new[] { new TaskSpec(() => 1, 0, "children"), new TaskSpec(() => 2, 0, "children") }));
                    return "parent";
                });
                Wait.Polling(m, () => rec.Has(parent) && Volatile.Read(ref children) != null && rec.HasAll(children), "parent and children");
                Check.Equal((object)1, rec.Completed[children[0]], "first child");
                Check.Equal((object)2, rec.Completed[children[1]], "second child");
                Check.True(rec.GroupsFinished.Contains("children"), "group children finished");
            }
        }

        [Test]
        public static void AddTasks100kInLists()
        {
            const int N = 100000;
            const int ListLength = 1000;
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
                var specs = new TaskSpec[ListLength];
                for (int start = 0; start < N; start += ListLength)
                {
                    for (int j = 0; j < ListLength; j++)
                    {
                        int k = start + j;
                        specs[j] = new TaskSpec(() => k);
                    }
                    m.AddTasks(specs);
                    m.PollEvents();
                }
                long addedMs = sw.ElapsedMilliseconds;
                Wait.Polling(m, () => completed == N, N + " completions", 120000);
                sw.Stop();
                Check.Equal((long)N * (N - 1) / 2, sum, "sum of results");
                m.PollEvents(); // releases the last poll's result
                Check.Equal(0L, BackgroundTaskManager.LiveGCHandleCount, "no handle left after the last poll");
                Console.WriteLine("    100000 tasks in lists of {0} (add + run + result GCHandle + poll on this thread): {1} ms total, adding took {2} ms, {3:F2} us/task",
                    ListLength, sw.ElapsedMilliseconds, addedMs, sw.Elapsed.TotalMilliseconds * 1000.0 / N);
            }
        }
    }
}
