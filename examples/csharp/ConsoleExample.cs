// The main-thread event model of btm, from C#.
//
// Tasks run on btm's native worker threads; their outcomes come back as C#
// events (TaskCompleted, TaskFailed, TaskGroupFinished, TaskProgress) raised
// by PollEvents() on the thread that calls it: here the main thread, in a
// loop that stands in for a UI or game loop. Handlers therefore never need a
// lock or a dispatcher.
//
// Build and run (tests/csharp/run.sh does this):
//   mcs -langversion:7.2 -r:Btm.dll -out:ConsoleExample.exe ConsoleExample.cs
//   LD_LIBRARY_PATH=target/release mono ConsoleExample.exe

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Btm;

public static class ConsoleExample
{
    private static int Thread_()
    {
        return Thread.CurrentThread.ManagedThreadId;
    }

    public static int Main()
    {
        Console.WriteLine("libbtm {0}; main thread is #{1}", BackgroundTaskManager.NativeVersion, Thread_());
        int finalEvents = 0;
        bool allThumbnailsDone = false;

        using (var manager = new BackgroundTaskManager(maxThreads: 4))
        {
            // 1. Subscribe: every handler runs on the main thread, inside PollEvents.
            manager.TaskCompleted += (id, group, result) =>
            {
                finalEvents++;
                var gathered = result as PassThroughResult;
                string shown = gathered != null
                    ? "[" + string.Join(", ", gathered.Select(r => r.TaskId + "=" + r.Value)) + "]"
                    : result == null ? "(no result)" : result.ToString();
                Console.WriteLine("  [main #{0}] completed task {1} in {2}: {3}", Thread_(), id, group, shown);
            };
            manager.TaskFailed += (id, group, message, details) =>
            {
                finalEvents++;
                Console.WriteLine("  [main #{0}] FAILED task {1} in {2}: {3}", Thread_(), id, group, message);
                Console.WriteLine("      details: {0}", details.Split('\n')[0]);
            };
            manager.TaskGroupFinished += group =>
            {
                Console.WriteLine("  [main #{0}] group {1} finished", Thread_(), group);
                if (group == "thumbnails")
                {
                    allThumbnailsDone = true;
                }
            };
            manager.TaskProgress += (id, group, progress, message) =>
                Console.WriteLine("  [main #{0}] task {1}: {2:P0} {3}", Thread_(), id, progress, message);

            // 2. Queue work while paused (the default, as in the original).
            var thumbnails = new List<ulong>();
            for (int i = 0; i < 3; i++)
            {
                int n = i;
                thumbnails.Add(manager.AddTask(() =>
                {
                    Thread.Sleep(20); // pretend to decode an image
                    return string.Format("thumb{0}.png (made on worker #{1})", n, Thread_());
                }, priority: 10 - n, group: "thumbnails"));
            }

            // A download with progress, and a task that needs its result.
            ulong download = manager.AddTask(ctx =>
            {
                for (int step = 1; step <= 4; step++)
                {
                    ctx.ThrowIfStopped();
                    Thread.Sleep(10);
                    ctx.ReportProgress(step / 4.0, "downloading");
                }
                return new Dictionary<string, object> { { "bytes", 4096 } };
            }, group: "io");
            ulong checksum = manager.AddTask(ctx =>
            {
                var up = ctx.GetUpstreamDictionary();
                return "checksum of " + up["bytes"] + " bytes";
            }, group: "io", upstreamTaskIds: new[] { download });

            // A pass-through gathering everything, with a payload.
            manager.AddPassThroughTask(group: "summary", upstreamTaskIds: thumbnails.Concat(new[] { checksum }), payload: "summary");

            // A failing task: the exception becomes a TaskFailed event.
            manager.AddTask(() => { throw new InvalidOperationException("disk full"); }, group: "io");

            // A task that is stopped before it runs: it raises no event, ever.
            ulong cancelled = manager.AddTask(() => "never", priority: -5);
            manager.StopTask(cancelled);

            // 3. Start, then run the "main loop": wait briefly for events, poll them.
            manager.StartProcessing();
            int expected = 3 + 2 + 1 + 1; // thumbnails, io pair, pass-through, failing task
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (finalEvents < expected && DateTime.UtcNow < deadline)
            {
                manager.WaitForEvents(50);  // a UI loop would simply poll once per frame
                manager.PollEvents();
            }

            // 4. Shut down with a bound, then Dispose (the using block).
            Console.WriteLine("shut down cleanly: {0}", manager.ShutDown(millisecondsTimeout: 5000));
            if (finalEvents != expected || !allThumbnailsDone)
            {
                Console.WriteLine("unexpected: {0} final events of {1}", finalEvents, expected);
                return 1;
            }
        }
        Console.WriteLine("live GCHandles after Dispose: {0}", BackgroundTaskManager.LiveGCHandleCount);
        return BackgroundTaskManager.LiveGCHandleCount == 0 ? 0 : 1;
    }
}
