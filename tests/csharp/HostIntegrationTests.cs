// Wake-ups (notify callback, SynchronizationContext, event fd) and the
// instrumentation hooks of the host-integration API.

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using Btm;

namespace Btm.Tests
{
    public static class HostIntegrationTests
    {
        /// <summary>A SynchronizationContext whose posts are run by whoever calls Pump (like a UI thread).</summary>
        private sealed class QueueContext : SynchronizationContext
        {
            private readonly BlockingCollection<KeyValuePair<SendOrPostCallback, object>> queue = new BlockingCollection<KeyValuePair<SendOrPostCallback, object>>();
            public int Posts;

            public override void Post(SendOrPostCallback d, object state)
            {
                Interlocked.Increment(ref Posts);
                queue.Add(new KeyValuePair<SendOrPostCallback, object>(d, state));
            }

            public void Pump(Func<bool> until, string what, int timeoutMs, Action onError = null)
            {
                var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
                while (!until())
                {
                    if (DateTime.UtcNow > deadline)
                    {
                        throw new TestFailure("timed out pumping for: " + what);
                    }
                    KeyValuePair<SendOrPostCallback, object> item;
                    if (queue.TryTake(out item, 20))
                    {
                        try
                        {
                            item.Key(item.Value);
                        }
                        catch (InvalidOperationException) when (onError != null)
                        {
                            // A UI loop would report the handler's exception and go on.
                            onError();
                        }
                    }
                }
            }
        }

        // Once an event is visible, its wake-up has been (or is about to be)
        // made: a few seconds are ample for it to arrive.
        private const int AfterIdleMs = 5000;

        [Test]
        public static void SynchronizationContextDeliversEventsWithoutAPollingLoop()
        {
            using (var m = new BackgroundTaskManager(2, true))
            {
                var rec = new Recorder(m);
                int me = Thread.CurrentThread.ManagedThreadId;

                // An event pending before registration is delivered by the post
                // made at registration.
                ulong early = m.AddTask(() => "early");
                Wait.For(() => m.GetStats().Undelivered >= 1, "early finished");
                var ui = new QueueContext();
                m.UseSynchronizationContext(ui);
                ui.Pump(() => rec.Has(early), "the event pending at registration", Wait.DefaultTimeoutMs);

                // One task finishing while the host makes no btm call: the wake-up
                // alone must bring its event.
                ulong one = m.AddTask(() => "one");
                Wait.For(() => m.GetStats().Undelivered >= 1, "one finished");
                ui.Pump(() => rec.Has(one), "the event of a task finished while the host was not calling btm", AfterIdleMs);

                // Many tasks.
                var ids = new List<ulong>();
                for (int i = 0; i < 50; i++)
                {
                    int k = i;
                    ids.Add(m.AddTask(() => k, 0, "ui"));
                }
                ui.Pump(() => rec.HasAll(ids) && rec.GroupsFinished.Contains("ui"), "every event through the context", Wait.DefaultTimeoutMs);
                Check.SequenceEqual(new[] { me }, rec.HandlerThreads, "handlers ran on the pumping thread");

                // A handler that throws: the events after it are drained by a re-post.
                bool thrown = false;
                m.TaskCompleted += (id, g, r) =>
                {
                    if (!thrown)
                    {
                        thrown = true;
                        throw new InvalidOperationException("handler");
                    }
                };
                ulong a = m.AddTask(() => 1);
                ulong b = m.AddTask(() => 2);
                int handlerErrors = 0;
                ui.Pump(() => rec.HasAll(new[] { a, b }), "a and b after a throwing handler", Wait.DefaultTimeoutMs, () => handlerErrors++);
                Check.True(thrown, "the handler threw");
                Check.Equal(1, handlerErrors, "the exception reached the context's loop once");
                m.UseSynchronizationContext(null);
            }
        }

        [Test]
        public static void EventsAvailableCallbackRunsOffTheHostThread()
        {
            using (var m = new BackgroundTaskManager(2, true))
            {
                var rec = new Recorder(m);
                var signalled = new ManualResetEventSlim();
                int callbackThread = 0;
                m.SetEventsAvailableCallback(() =>
                {
                    callbackThread = Thread.CurrentThread.ManagedThreadId;
                    signalled.Set();
                });
                ulong t = m.AddTask(() => "x");
                // Not WaitIdle: a host waiting inside btm would wake it up anyway
                // (that hid a bug in btm once: the wake-up of a worker's last task
                // was held until the worker ran another task).
                Wait.For(() => m.GetStats().Undelivered >= 1, "t finished");
                Check.True(signalled.Wait(AfterIdleMs), "the callback ran (no host call needed)");
                Check.True(callbackThread != Thread.CurrentThread.ManagedThreadId, "on a worker thread");
                Wait.Polling(m, () => rec.Has(t), "t");

                // Exceptions in the callback are dropped, never reach native code.
                long dropped = BackgroundTaskManager.DroppedCallbackExceptionCount;
                m.SetEventsAvailableCallback(() => { throw new InvalidOperationException("callback"); });
                ulong u = m.AddTask(() => "y");
                Wait.For(() => m.GetStats().Undelivered >= 1, "u finished");
                Wait.For(() => BackgroundTaskManager.DroppedCallbackExceptionCount > dropped, "the callback's exception was dropped", AfterIdleMs);
                Wait.Polling(m, () => rec.Has(u), "u");
                m.SetEventsAvailableCallback(null);
            }
        }

        [StructLayout(LayoutKind.Sequential)]
        private struct PollFd
        {
            public int fd;
            public short events;
            public short revents;
        }

        [DllImport("libc", SetLastError = true)]
        private static extern int poll([In, Out] PollFd[] fds, UIntPtr nfds, int timeout);

        private static bool Readable(int fd, int timeoutMs)
        {
            var fds = new[] { new PollFd { fd = fd, events = 1 /* POLLIN */ } };
            return poll(fds, (UIntPtr)1, timeoutMs) == 1 && (fds[0].revents & 1) != 0;
        }

        [Test]
        public static void EventFdIsReadableExactlyWhileEventsArePending()
        {
            if (Environment.OSVersion.Platform != PlatformID.Unix)
            {
                return;
            }
            using (var m = new BackgroundTaskManager(1, true))
            {
                var rec = new Recorder(m);
                int fd = m.GetEventFileDescriptor();
                Check.True(fd >= 0, "a descriptor");
                Check.Equal(fd, m.GetEventFileDescriptor(), "the same descriptor every time");
                Check.True(!Readable(fd, 0), "not readable with nothing pending");
                ulong t = m.AddTask(() => "x");
                Check.True(Readable(fd, Wait.DefaultTimeoutMs), "readable once t finished");
                m.PollEvents();
                Check.True(rec.Has(t), "t delivered");
                Check.True(!Readable(fd, 0), "cleared by draining");
            }
        }

        [Test]
        public static void TheEventWaitHandleIsSignalledWhileEventsArePendingOnWindowsOnly()
        {
            using (var m = new BackgroundTaskManager(1, true))
            {
                if (Environment.OSVersion.Platform == PlatformID.Unix)
                {
                    BtmException ex = Check.Throws<BtmException>(() => m.GetEventWaitHandle(), "GetEventWaitHandle on Unix");
                    Check.Equal(BtmStatus.Unsupported, ex.Status, "Unsupported");
                    return;
                }
                var rec = new Recorder(m);
                Check.Throws<BtmException>(() => m.GetEventFileDescriptor(), "GetEventFileDescriptor on Windows");
                WaitHandle h = m.GetEventWaitHandle();
                Check.True(!h.WaitOne(0), "not signalled with nothing pending");
                ulong t = m.AddTask(() => "x");
                Check.True(h.WaitOne(Wait.DefaultTimeoutMs), "signalled once t finished");
                m.PollEvents();
                Check.True(rec.Has(t), "t delivered");
                Check.True(!h.WaitOne(0), "reset by draining");
            }
        }

        [Test]
        public static void TaskHooksRunAroundEachTaskDelegateOnItsWorker()
        {
            using (var m = new BackgroundTaskManager(2))
            {
                var rec = new Recorder(m);
                var log = new ConcurrentQueue<string>();
                var hookThreads = new ConcurrentDictionary<ulong, int>();
                var taskThreads = new ConcurrentDictionary<ulong, int>();
                m.SetTaskHooks(
                    (id, group, worker) => { log.Enqueue("start " + id + " " + group); hookThreads[id] = Thread.CurrentThread.ManagedThreadId; },
                    (id, group, worker) => log.Enqueue("end " + id + " " + group));
                ulong a = m.AddTask(ctx => { taskThreads[ctx.TaskId] = Thread.CurrentThread.ManagedThreadId; return 1; }, 0, "hooked");
                ulong b = m.AddTask(ctx => { taskThreads[ctx.TaskId] = Thread.CurrentThread.ManagedThreadId; }, 0, TaskGroup.Numbered(9));
                ulong p = m.AddPassThroughTask(0, "hooked", new[] { a });
                m.StartProcessing();
                Wait.Polling(m, () => rec.HasAll(new[] { a, b, p }), "a, b, p");
                List<string> entries = log.ToList();
                foreach (var expected in new[] { "start " + a + " \"hooked\"", "end " + a + " \"hooked\"", "start " + b + " #9", "end " + b + " #9" })
                {
                    Check.True(entries.Contains(expected), "hook entry <" + expected + "> in: " + string.Join("; ", entries));
                }
                Check.True(entries.IndexOf("start " + a + " \"hooked\"") < entries.IndexOf("end " + a + " \"hooked\""), "start before end");
                Check.True(!entries.Any(e => e.Contains(" " + p + " ")), "pass-through tasks are not reported");
                Check.Equal(taskThreads[a], hookThreads[a], "the hook runs on the task's worker");

                // Hook exceptions are dropped; removing the hooks stops them.
                long dropped = BackgroundTaskManager.DroppedCallbackExceptionCount;
                m.SetTaskHooks((id, g, w) => { throw new InvalidOperationException("hook"); }, null);
                ulong c = m.AddTask(() => 3);
                Wait.Polling(m, () => rec.Has(c), "c");
                Check.True(rec.Completed.ContainsKey(c), "c completed despite the throwing hook");
                Check.True(BackgroundTaskManager.DroppedCallbackExceptionCount > dropped, "the hook's exception was dropped");
                m.SetTaskHooks(null, null);
                int before = log.Count;
                ulong d = m.AddTask(() => 4);
                Wait.Polling(m, () => rec.Has(d), "d");
                Check.Equal(before, log.Count, "no hook after removal");
            }
        }
    }
}
