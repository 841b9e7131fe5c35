using System;
using System.Diagnostics;
using System.Threading;
using Btm;

namespace Btm.Tests
{
    public static class ProcessTests
    {
        public const string ChildArgument = "--child-exit-without-dispose";

        /// <summary>
        /// Run in a child process: leaves two managers undisposed, one with idle
        /// workers and one with a task that never returns, then returns from
        /// Main. The process must still exit.
        /// </summary>
        public static int ChildExitWithoutDispose()
        {
            var idle = new BackgroundTaskManager(2, true);
            for (int i = 0; i < 10; i++)
            {
                idle.AddTask(() => i);
            }
            idle.WaitIdle(Wait.DefaultTimeoutMs);
            idle.PollEvents();
            var busy = new BackgroundTaskManager(1, true);
            var started = new ManualResetEventSlim();
            busy.AddTask(ctx =>
            {
                started.Set();
                while (true)
                {
                    Thread.Sleep(10);
                }
            });
            started.Wait(Wait.DefaultTimeoutMs);
            Console.WriteLine("child: returning from Main without Dispose");
            return 0;
        }

        [Test]
        public static void TheProcessExitsEvenIfAManagerWasNeverDisposed()
        {
            string runtime = Process.GetCurrentProcess().MainModule.FileName;
            string exe = typeof(ProcessTests).Assembly.Location;
            var info = new ProcessStartInfo(runtime, "--debug \"" + exe + "\" " + ChildArgument)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using (Process child = Process.Start(info))
            {
                bool exited = child.WaitForExit(Wait.DefaultTimeoutMs);
                if (!exited)
                {
                    child.Kill();
                    child.WaitForExit();
                }
                string output = child.StandardOutput.ReadToEnd() + child.StandardError.ReadToEnd();
                Check.True(exited, "the child exited within 30 s (the binding shuts undisposed managers down at ProcessExit); output: " + output);
                Check.Equal(0, child.ExitCode, "exit code; output: " + output);
                Check.True(output.Contains("child: returning"), "the child ran: " + output);
            }
        }
    }
}
