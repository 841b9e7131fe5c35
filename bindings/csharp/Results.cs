using System;
using System.Collections;
using System.Collections.Generic;

namespace Btm
{
    /// <summary>One result entry: the task that produced it and the value it returned.</summary>
    public readonly struct TaskResult
    {
        public TaskResult(ulong taskId, object value)
        {
            TaskId = taskId;
            Value = value;
        }

        /// <summary>The producing task (for a pass-through payload, the pass-through task).</summary>
        public ulong TaskId { get; }

        /// <summary>The object the task returned (never null: a null return is "no result").</summary>
        public object Value { get; }

        public override string ToString()
        {
            return string.Format("{0}: {1}", TaskId, Value);
        }
    }

    /// <summary>
    /// The result of a pass-through task (the <c>result</c> of its
    /// TaskCompleted event): its payload (if any) first, then the results of
    /// its upstream tasks in the order those completed. Enumerable;
    /// <see cref="ToDictionary"/> merges dictionary entries as the original's
    /// kwargs did (later entries win, so upstream results win over the
    /// payload).
    /// </summary>
    public sealed class PassThroughResult : IReadOnlyList<TaskResult>
    {
        private readonly TaskResult[] entries;

        internal PassThroughResult(ulong taskId, object payload, TaskResult[] entries)
        {
            TaskId = taskId;
            Payload = payload;
            this.entries = entries;
        }

        /// <summary>The pass-through task's id.</summary>
        public ulong TaskId { get; }

        /// <summary>The payload given to AddPassThroughTask (null if none).</summary>
        public object Payload { get; }

        public int Count
        {
            get { return entries.Length; }
        }

        public TaskResult this[int index]
        {
            get { return entries[index]; }
        }

        public IEnumerator<TaskResult> GetEnumerator()
        {
            return ((IEnumerable<TaskResult>)entries).GetEnumerator();
        }

        IEnumerator IEnumerable.GetEnumerator()
        {
            return entries.GetEnumerator();
        }

        /// <summary>Merged dictionary view (see <see cref="TaskResults.Merge"/>).</summary>
        public Dictionary<string, object> ToDictionary()
        {
            return TaskResults.Merge(entries);
        }
    }

    public static class TaskResults
    {
        /// <summary>
        /// Merges the entries that are dictionaries with string keys
        /// (IDictionary&lt;string, object&gt; or a non-generic IDictionary) into one
        /// dictionary, in order, so a later entry wins a key clash (the
        /// original's rule: the upstream task that completed last wins).
        /// Entries that are not dictionaries are skipped.
        /// </summary>
        public static Dictionary<string, object> Merge(IEnumerable<TaskResult> entries)
        {
            var merged = new Dictionary<string, object>(StringComparer.Ordinal);
            foreach (TaskResult entry in entries)
            {
                var generic = entry.Value as IDictionary<string, object>;
                if (generic != null)
                {
                    foreach (KeyValuePair<string, object> kv in generic)
                    {
                        merged[kv.Key] = kv.Value;
                    }
                    continue;
                }
                var plain = entry.Value as IDictionary;
                if (plain != null)
                {
                    foreach (DictionaryEntry kv in plain)
                    {
                        string key = kv.Key as string;
                        if (key != null)
                        {
                            merged[key] = kv.Value;
                        }
                    }
                }
            }
            return merged;
        }
    }
}
