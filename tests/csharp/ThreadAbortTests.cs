using System;
using System.Threading;
using Btm;

namespace Btm.Tests
{
    public static class ThreadAbortTests
    {
        /// <summary>
        /// A ThreadAbortException (Thread.Abort; Mono aborting the threads of an
        /// unloading domain, as on a Unity domain reload) is raised again at the
        /// end of every catch block. Out of a callback it would cross into btm's
        /// native frames: the worker never returns to btm, the task stays
        /// running forever and Dispose hangs. It must become a failure instead.
        /// </summary>
        [Test]
        public static void AThreadAbortInsideATaskOrHookBecomesAFailureAndTheWorkerGoesOn()
        {
            var m = new BackgroundTaskManager(1, true);
            bool finished = false;
            try
            {
                var r = new Recorder(m);
                ulong aborted = m.AddTask(() => { Thread.CurrentThread.Abort(); });
                ulong after = m.AddTask(() => 7);
                Wait.Polling(m, () => r.Has(aborted) && r.Has(after), "the events of both tasks", 5000);
                Check.True(r.Failed.ContainsKey(aborted), "the aborted task failed");
                Check.True(r.Failed[aborted][1].Contains("ThreadAbortException"), "details name the abort: " + r.Failed[aborted][1]);
                Check.Equal((object)7, r.Completed[after], "the next task ran on the same worker");

                long dropped = BackgroundTaskManager.DroppedCallbackExceptionCount;
                m.SetTaskHooks((id, g, w) => Thread.CurrentThread.Abort(), null);
                ulong hooked = m.AddTask(() => 8);
                Wait.Polling(m, () => r.Has(hooked), "the event of the task whose start hook aborted", 5000);
                Check.Equal((object)8, r.Completed[hooked], "the task ran after its hook aborted");
                Check.True(BackgroundTaskManager.DroppedCallbackExceptionCount > dropped, "the hook's abort was counted as a dropped exception");
                finished = true;
            }
            finally
            {
                // Without the fix the worker never comes back: Dispose would hang.
                if (m.ShutDown(finished ? Timeout.Infinite : 2000))
                {
                    m.Dispose();
                }
            }
        }
    }
}
