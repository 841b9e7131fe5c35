using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Btm;

namespace Btm.Tests
{
    /// <summary>Records every event a manager raises, and the thread it was raised on.</summary>
    public sealed class Recorder
    {
        public readonly List<string> Log = new List<string>();
        public readonly Dictionary<ulong, object> Completed = new Dictionary<ulong, object>();
        public readonly Dictionary<ulong, string[]> Failed = new Dictionary<ulong, string[]>();
        public readonly List<TaskGroup> GroupsFinished = new List<TaskGroup>();
        public readonly List<double> Progress = new List<double>();
        public readonly HashSet<int> HandlerThreads = new HashSet<int>();
        public readonly HashSet<ulong> TasksSeen = new HashSet<ulong>();

        public Recorder(BackgroundTaskManager m)
        {
            m.TaskCompleted += (id, group, result) =>
            {
                Note();
                Check.True(!Completed.ContainsKey(id) && !Failed.ContainsKey(id), "one final event per task (task " + id + ")");
                Completed[id] = result;
                TasksSeen.Add(id);
                Log.Add("completed " + id);
            };
            m.TaskFailed += (id, group, message, details) =>
            {
                Note();
                Check.True(!Completed.ContainsKey(id) && !Failed.ContainsKey(id), "one final event per task (task " + id + ")");
                Failed[id] = new[] { message, details };
                TasksSeen.Add(id);
                Log.Add("failed " + id);
            };
            m.TaskGroupFinished += group =>
            {
                Note();
                GroupsFinished.Add(group);
                Log.Add("group " + group);
            };
            m.TaskProgress += (id, group, progress, message) =>
            {
                Note();
                Progress.Add(progress);
                TasksSeen.Add(id);
                Log.Add("progress " + id + " " + progress + " " + message);
            };
        }

        public int FinalEvents
        {
            get { return Completed.Count + Failed.Count; }
        }

        public bool Has(ulong id)
        {
            return Completed.ContainsKey(id) || Failed.ContainsKey(id);
        }

        public bool HasAll(IEnumerable<ulong> ids)
        {
            return ids.All(Has);
        }

        private void Note()
        {
            HandlerThreads.Add(Thread.CurrentThread.ManagedThreadId);
        }
    }
}
