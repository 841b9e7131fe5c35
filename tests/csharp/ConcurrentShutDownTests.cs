using System;
using System.Threading;
using Btm;

namespace Btm.Tests
{
    public static class ConcurrentShutDownTests
    {
        /// <summary>
        /// Dispose "shuts down, waiting for running tasks". When another thread's
        /// ShutDown(timeout) is still waiting for the workers, Dispose's own
        /// btm_shut_down returns ALREADY_SHUT_DOWN at once: Dispose must still
        /// not return while a task runs (the host frees what tasks use after it).
        /// </summary>
        [Test]
        public static void DisposeDuringAnotherThreadsShutDownWaitsForRunningTasks()
        {
            var m = new BackgroundTaskManager(1, true);
            var started = new ManualResetEventSlim();
            int running = 0;
            m.AddTask(() =>
            {
                Volatile.Write(ref running, 1);
                started.Set();
                Thread.Sleep(1000);
                Volatile.Write(ref running, 0);
            });
            started.Wait(Wait.DefaultTimeoutMs);
            bool first = false;
            var other = new Thread(() => first = m.ShutDown(Wait.DefaultTimeoutMs));
            other.Start();
            Thread.Sleep(100); // the other thread is now waiting in btm_shut_down
            m.Dispose();
            int runningAfterDispose = Volatile.Read(ref running);
            other.Join();
            Check.True(first, "the first ShutDown saw every worker exit");
            Check.Equal(0, runningAfterDispose, "tasks running once Dispose returned");
        }

        /// <summary>"A second call does not wait again and returns the first call's answer", also while the first is still waiting.</summary>
        [Test]
        public static void ASecondShutDownDuringTheFirstReturnsTheFirstCallsAnswer()
        {
            using (var m = new BackgroundTaskManager(1, true))
            {
                var started = new ManualResetEventSlim();
                m.AddTask(() =>
                {
                    started.Set();
                    Thread.Sleep(500);
                });
                started.Wait(Wait.DefaultTimeoutMs);
                bool first = false;
                var other = new Thread(() => first = m.ShutDown());
                other.Start();
                Thread.Sleep(100);
                bool second = m.ShutDown();
                other.Join();
                Check.True(first, "the first ShutDown saw every worker exit");
                Check.Equal(first, second, "the second ShutDown's answer");
            }
        }

        /// <summary>A task that shuts its own manager down while the host's ShutDown waits for it must not deadlock.</summary>
        [Test]
        public static void ShutDownFromATaskWhileTheHostShutsDownDoesNotDeadlock()
        {
            var m = new BackgroundTaskManager(1, true);
            var started = new ManualResetEventSlim();
            var go = new ManualResetEventSlim();
            bool? inTask = null;
            m.AddTask(() =>
            {
                started.Set();
                go.Wait(Wait.DefaultTimeoutMs);
                inTask = m.ShutDown();
                m.Dispose();
            });
            started.Wait(Wait.DefaultTimeoutMs);
            var host = new Thread(() => m.ShutDown());
            host.Start();
            Thread.Sleep(100);
            go.Set();
            Check.True(host.Join(Wait.DefaultTimeoutMs), "the host's ShutDown returned");
            Check.True(inTask.HasValue, "the task's ShutDown returned");
            m.Dispose();
        }
    }
}
