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
        Send(runner, "OnDestroy");
        long live = BackgroundTaskManager.LiveGCHandleCount;
        Console.WriteLine("stub player: {0} frames, {1} outcomes delivered in Update, {2} pending, {3} live GCHandles after OnDestroy", frames, finished, pending, live);
        return pending == 0 && finished == 6 && live == 0 ? 0 : 1;
    }
}
