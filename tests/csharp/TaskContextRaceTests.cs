using System;
using System.Threading;
using Btm;

namespace Btm.Tests
{
    public static class TaskContextRaceTests
    {
        /// <summary>
        /// TaskContext: "afterwards every member ... throws InvalidOperationException".
        /// A thread the task started may still use the context while the task
        /// function returns; a call that passed the validity check must not run
        /// on into the context, which lived on the worker's stack. No task is
        /// stopped here, so IsStopped is never true unless it read dead memory.
        /// </summary>
        [Test]
        public static void AContextUsedFromAnotherThreadAsItsTaskReturnsNeverReadsTheDeadContext()
        {
            using (var m = new BackgroundTaskManager(2, true))
            {
                int wrongAnswers = 0;
                int otherErrors = 0;
                int returned = 0;
                const int Tasks = 3000;
                for (int i = 0; i < Tasks; i++)
                {
                    m.AddTask(ctx =>
                    {
                        var ready = new ManualResetEventSlim();
                        var t = new Thread(() =>
                        {
                            ready.Set();
                            try
                            {
                                while (true)
                                {
                                    if (ctx.IsStopped)
                                    {
                                        Interlocked.Increment(ref wrongAnswers);
                                    }
                                }
                            }
                            catch (InvalidOperationException)
                            {
                                // The task returned: expected.
                            }
                            catch (Exception)
                            {
                                Interlocked.Increment(ref otherErrors);
                            }
                            Interlocked.Increment(ref returned);
                        });
                        t.IsBackground = true;
                        t.Start();
                        ready.Wait();
                        Thread.SpinWait(100);
                    });
                    if (i % 50 == 49)
                    {
                        Wait.IdleAndDrained(m);
                    }
                }
                Wait.IdleAndDrained(m);
                Wait.For(() => Volatile.Read(ref returned) == Tasks, "every helper thread saw its context end");
                Check.Equal(0, Volatile.Read(ref otherErrors), "other exceptions");
                Check.Equal(0, Volatile.Read(ref wrongAnswers), "IsStopped answers read from a task's dead context (no task was stopped)");
            }
        }
    }
}
