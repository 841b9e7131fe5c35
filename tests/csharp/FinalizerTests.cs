using System;
using System.Runtime.CompilerServices;
using System.Threading;
using Btm;

namespace Btm.Tests
{
    public static class FinalizerTests
    {
        [MethodImpl(MethodImplOptions.NoInlining)]
        private static WeakReference ForgetAManagerWithARunningTask(ManualResetEventSlim started, ManualResetEventSlim release)
        {
            var m = new BackgroundTaskManager(1, true);
            m.AddTask(() =>
            {
                started.Set();
                release.Wait();
            });
            m.AddTask(() => 2); // queued behind it: never runs
            started.Wait(Wait.DefaultTimeoutMs);
            return new WeakReference(m);
        }

        /// <summary>
        /// A manager that is never disposed and becomes unreachable is released
        /// by its SafeHandle's finalizer. That must not block the finalizer
        /// thread (every finalizer of the process) for as long as one of its
        /// tasks runs: btm_destroy alone waits for running tasks.
        /// </summary>
        [Test]
        public static void AForgottenManagerDoesNotBlockTheFinalizerThreadWhileATaskRuns()
        {
            var started = new ManualResetEventSlim();
            var release = new ManualResetEventSlim();
            WeakReference weak = ForgetAManagerWithARunningTask(started, release);
            var finalized = new ManualResetEventSlim();
            var collector = new Thread(() =>
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                GC.Collect();
                GC.WaitForPendingFinalizers();
                finalized.Set();
            });
            collector.IsBackground = true;
            collector.Start();
            bool inTime = finalized.Wait(5000);
            bool collected = !weak.IsAlive;
            release.Set();
            finalized.Wait(Wait.DefaultTimeoutMs);
            Check.True(collected, "the forgotten manager was collected");
            Check.True(inTime, "pending finalizers ran within 5 s while the forgotten manager's task still ran");
            // The task then finishes alone: its delegate (and the queued one's) are freed (the runner's leak check).
        }
    }
}
