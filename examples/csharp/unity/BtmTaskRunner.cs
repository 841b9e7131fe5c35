// Unity sample: background work with btm, results on the main thread.
//
// Put bindings/csharp/*.cs and this file under Assets/ (e.g. Assets/Btm/),
// and the native library where Unity finds plugins (Assets/Plugins/x86_64/
// libbtm.so, btm.dll or libbtm.dylib). Add the component to a GameObject.
//
// - Tasks run on btm's native worker threads: they must not touch Unity
//   objects (no GameObject, Transform, Texture... only plain data).
// - Update() drains the events with a per-frame budget, so TaskCompleted /
//   TaskFailed / TaskGroupFinished handlers run on the main thread, where
//   touching Unity objects is allowed.
// - OnDestroy() shuts the manager down with a time limit and disposes it,
//   before Unity unloads the scripting domain (leaving the play mode,
//   recompiling scripts): no native thread may still run managed code then.
//
// It works with Mono and IL2CPP: the binding's callbacks are static and
// marked [MonoPInvokeCallback], and it uses no `unsafe` code.

using System;
using System.Collections.Generic;
using Btm;
using UnityEngine;

[DisallowMultipleComponent]
public sealed class BtmTaskRunner : MonoBehaviour
{
    [SerializeField, Tooltip("Worker threads (0 means 8).")]
    private int maxThreads = 4;

    [SerializeField, Tooltip("Events delivered per frame at most, to bound the time spent in Update.")]
    private int maxEventsPerFrame = 256;

    [SerializeField, Tooltip("How long OnDestroy waits for running tasks to return.")]
    private int shutDownTimeoutMs = 2000;

    private BackgroundTaskManager manager;

    // Per-task callbacks. Touched only on the main thread (Enqueue, Cancel and
    // the event handlers all run there), so no lock is needed.
    private readonly Dictionary<ulong, Action<object>> onDone = new Dictionary<ulong, Action<object>>();
    private readonly Dictionary<ulong, Action<string>> onFailed = new Dictionary<ulong, Action<string>>();
    // The tasks enqueued downstream of each pending task: a Cancel stops them
    // too (none of them raises an event), so it forgets their callbacks.
    private readonly Dictionary<ulong, List<ulong>> downstreamOf = new Dictionary<ulong, List<ulong>>();

    /// <summary>Tasks whose outcome has not reached the main thread yet.</summary>
    public int PendingCount
    {
        get { return onDone.Count; }
    }

    /// <summary>Completed and failed tasks seen so far (for the sample's log).</summary>
    public int FinishedCount { get; private set; }

    private void Awake()
    {
        manager = new BackgroundTaskManager(maxThreads, startProcessing: true);
        manager.TaskCompleted += HandleCompleted;
        manager.TaskFailed += HandleFailed;
        manager.TaskGroupFinished += group => Debug.Log("btm: group " + group + " finished at frame " + Time.frameCount);
        manager.TaskProgress += (id, group, progress, message) => Debug.Log(string.Format("btm: task {0} {1:P0} {2}", id, progress, message));
    }

    private void Start()
    {
        // Sample work: "bake" a few height maps in the background, then combine
        // them in a downstream task that reads the upstream results.
        var tiles = new List<ulong>();
        for (int i = 0; i < 4; i++)
        {
            int seed = i;
            tiles.Add(Enqueue(ctx => BakeHeights(ctx, seed, 256), result =>
                Debug.Log("btm: tile " + seed + " baked, " + ((float[])result).Length + " samples"), group: "tiles"));
        }
        Enqueue(ctx =>
        {
            float max = float.MinValue;
            foreach (TaskResult r in ctx.UpstreamResults)
            {
                foreach (float h in (float[])r.Value)
                {
                    max = Math.Max(max, h);
                }
            }
            return max;
        }, result => Debug.Log("btm: highest point of all tiles: " + result), upstream: tiles);

        // A failing task: its exception arrives as TaskFailed on the main thread.
        Enqueue(ctx => { throw new InvalidOperationException("this tile is corrupt"); }, null,
            message => Debug.LogWarning("btm: as expected, a task failed: " + message));
    }

    /// <summary>
    /// Runs <paramref name="work"/> on a worker thread; <paramref name="done"/>
    /// (or <paramref name="failed"/>) runs later on the main thread, from Update.
    /// </summary>
    public ulong Enqueue(Func<TaskContext, object> work, Action<object> done, Action<string> failed = null, TaskGroup group = default(TaskGroup), IEnumerable<ulong> upstream = null)
    {
        ulong[] upstreamIds = upstream == null ? null : new List<ulong>(upstream).ToArray();
        ulong id = manager.AddTask(work, 0, group, upstreamIds);
        onDone[id] = done;
        onFailed[id] = failed;
        if (upstreamIds != null)
        {
            foreach (ulong up in upstreamIds)
            {
                List<ulong> downstream;
                if (!downstreamOf.TryGetValue(up, out downstream))
                {
                    downstream = new List<ulong>();
                    downstreamOf[up] = downstream;
                }
                downstream.Add(id);
            }
        }
        return id;
    }

    /// <summary>Stops a task and its downstream tasks; their callbacks never run.</summary>
    public void Cancel(ulong id)
    {
        StopReport stopped = manager.StopTask(id, stopUpstream: false, stopDownstream: true);
        onDone.Remove(id);
        onFailed.Remove(id);
        if (stopped.Total == 0)
        {
            return; // not live any more: its downstream tasks were not stopped
        }
        // The stop reached every pending task downstream of it as well.
        var reached = new Stack<ulong>();
        reached.Push(id);
        while (reached.Count > 0)
        {
            ulong stoppedId = reached.Pop();
            List<ulong> downstream;
            if (downstreamOf.TryGetValue(stoppedId, out downstream))
            {
                downstreamOf.Remove(stoppedId);
                foreach (ulong d in downstream)
                {
                    if (onDone.Remove(d) | onFailed.Remove(d))
                    {
                        reached.Push(d);
                    }
                }
            }
        }
    }

    /// <summary>A task's own event has arrived: it is no longer live, so a Cancel of it stops nothing.</summary>
    private void Forget(ulong id)
    {
        onDone.Remove(id);
        onFailed.Remove(id);
        downstreamOf.Remove(id);
    }

    private void Update()
    {
        if (manager != null)
        {
            manager.PollEvents(maxEventsPerFrame);
        }
    }

    private void OnDestroy()
    {
        if (manager == null)
        {
            return;
        }
        // Stop everything and wait (bounded) for the workers to leave managed code.
        if (!manager.ShutDown(shutDownTimeoutMs))
        {
            Debug.LogWarning("btm: " + manager.TasksStillRunningAtShutDown + " task(s) still running after " + shutDownTimeoutMs + " ms; they finish alone");
        }
        manager.Dispose();
        manager = null;
        onDone.Clear();
        onFailed.Clear();
        downstreamOf.Clear();
    }

    private void HandleCompleted(ulong id, TaskGroup group, object result)
    {
        FinishedCount++;
        Action<object> callback;
        bool known = onDone.TryGetValue(id, out callback);
        Forget(id);
        if (known && callback != null)
        {
            callback(result);
        }
    }

    private void HandleFailed(ulong id, TaskGroup group, string message, string details)
    {
        FinishedCount++;
        Action<string> callback;
        bool known = onFailed.TryGetValue(id, out callback);
        Forget(id);
        if (known && callback != null)
        {
            callback(message);
            return;
        }
        Debug.LogError("btm: task " + id + " failed: " + message + "\n" + details);
    }

    // Plain computation on plain data: safe on a worker thread.
    private static float[] BakeHeights(TaskContext ctx, int seed, int size)
    {
        var heights = new float[size * size];
        var random = new System.Random(seed);
        for (int y = 0; y < size; y++)
        {
            ctx.ThrowIfStopped();
            for (int x = 0; x < size; x++)
            {
                heights[y * size + x] = (float)(Math.Sin(x * 0.05 + seed) * Math.Cos(y * 0.05) + random.NextDouble() * 0.1);
            }
            if (y % 64 == 63)
            {
                ctx.ReportProgress((y + 1) / (double)size, "baking");
            }
        }
        return heights;
    }
}
