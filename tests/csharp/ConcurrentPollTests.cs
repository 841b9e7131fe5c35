using System;
using System.Threading;
using Btm;

namespace Btm.Tests
{
    public static class ConcurrentPollTests
    {
        /// <summary>
        /// README: "Every method is thread-safe ... PollEvents calls are
        /// serialised", and PollEvents raises the events "in order". Two threads
        /// polling at once must not run handlers concurrently (nor out of order).
        /// </summary>
        [Test]
        public static void HandlersOfConcurrentPollEventsCallsNeverOverlap()
        {
            using (var m = new BackgroundTaskManager(2, false))
            {
                int inside = 0;
                int overlaps = 0;
                int seen = 0;
                var bothTaken = new CountdownEvent(2);
                m.TaskCompleted += (id, group, result) =>
                {
                    if (Interlocked.Increment(ref inside) > 1)
                    {
                        Interlocked.Increment(ref overlaps);
                    }
                    Interlocked.Increment(ref seen);
                    // Give the other poller every chance to raise its event meanwhile.
                    bothTaken.Signal();
                    bothTaken.Wait(500);
                    Interlocked.Decrement(ref inside);
                };
                m.AddTask(() => 1);
                m.AddTask(() => 2);
                m.StartProcessing();
                Check.True(m.WaitIdle(Wait.DefaultTimeoutMs), "idle");
                var a = new Thread(() => m.PollEvents());
                var b = new Thread(() => m.PollEvents());
                a.Start();
                b.Start();
                a.Join();
                b.Join();
                Check.Equal(2, Volatile.Read(ref seen), "events raised");
                Check.Equal(0, Volatile.Read(ref overlaps), "handlers that ran while another handler of a concurrent PollEvents was running");
            }
        }
    }
}
