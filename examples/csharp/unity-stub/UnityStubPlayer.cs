// Plays a MonoBehaviour roughly as the Unity engine does: Awake, Start, then
// Update once per frame, then OnDestroy (calling the private message methods
// through reflection). tests/csharp/run.sh uses it to run the Unity sample
// against the stub: it must deliver every outcome from Update and leave no
// GCHandle behind after OnDestroy.

using System;
using System.Diagnostics;
using System.Reflection;
using System.Threading;
using Btm;
using UnityEngine;

public static class UnityStubPlayer
{
    private static void Send(MonoBehaviour behaviour, string message)
    {
        MethodInfo method = behaviour.GetType().GetMethod(message, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic);
        if (method != null)
        {
            method.Invoke(behaviour, null);
        }
    }

    public static int Main()
    {
        var runner = new BtmTaskRunner();
        Send(runner, "Awake");
        Send(runner, "Start");
        var clock = Stopwatch.StartNew();
        while (runner.PendingCount > 0 && clock.ElapsedMilliseconds < 30000)
        {
            Time.frameCount++;
            Time.deltaTime = 1 / 60f;
            Send(runner, "Update");
            Thread.Sleep(16); // frame pacing of a 60 Hz player
        }
        int frames = Time.frameCount;
        int pending = runner.PendingCount;
        int finished = runner.FinishedCount;

        // Cancel: a running task and the task downstream of it. The stop
        // reaches both, so neither raises an event: Cancel must forget both
        // tasks' callbacks, or PendingCount never returns to 0 (regression:
        // it forgot only the cancelled task's, and the downstream task's
        // stayed pending forever).
        var gate = new ManualResetEventSlim(false);
        var started = new ManualResetEventSlim(false);
        ulong slow = runner.Enqueue(ctx => { started.Set(); gate.Wait(10000); return 1; }, result => { });
        runner.Enqueue(ctx => 2, result => { }, upstream: new[] { slow });
        bool ran = started.Wait(10000);
        runner.Cancel(slow);
        gate.Set();
        for (int i = 0; i < 10; i++)
        {
            Time.frameCount++;
            Send(runner, "Update");
            Thread.Sleep(16);
        }
        int pendingAfterCancel = runner.PendingCount;
        Console.WriteLine("stub player: cancelled a running task and its downstream task (it ran: {0}); {1} pending after 10 more frames", ran, pendingAfterCancel);
        pending += pendingAfterCancel;
        if (runner.FinishedCount != finished)
        {
            Console.WriteLine("stub player: a cancelled task delivered an outcome");
            pending++;
        }
        Send(runner, "OnDestroy");
        long live = BackgroundTaskManager.LiveGCHandleCount;
        Console.WriteLine("stub player: {0} frames, {1} outcomes delivered in Update, {2} pending, {3} live GCHandles after OnDestroy", frames, finished, pending, live);
        return pending == 0 && finished == 6 && live == 0 ? 0 : 1;
    }
}
