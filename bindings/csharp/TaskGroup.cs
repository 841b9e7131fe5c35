using System;

namespace Btm
{
    /// <summary>How a <see cref="TaskGroup"/> is identified.</summary>
    public enum TaskGroupKind
    {
        /// <summary>Tasks added without a group.</summary>
        Default = 0,
        /// <summary>Any 64-bit number the host picks, or one from NextGroupId().</summary>
        Numbered = 1,
        /// <summary>A string such as "thumbnails" (never equal to a numbered group).</summary>
        Named = 2,
    }

    /// <summary>
    /// A task group: the default group, a numbered group or a named group.
    /// A string converts implicitly to a named group, so
    /// <c>AddTask(fn, group: "thumbnails")</c> works. Groups are plain values
    /// (compare with ==); a named group is interned by each manager on first
    /// use.
    /// </summary>
    public readonly struct TaskGroup : IEquatable<TaskGroup>
    {
        private readonly TaskGroupKind kind;
        private readonly ulong number;
        private readonly string name;

        private TaskGroup(TaskGroupKind kind, ulong number, string name)
        {
            this.kind = kind;
            this.number = number;
            this.name = name;
        }

        /// <summary>The default group (also <c>default(TaskGroup)</c>).</summary>
        public static TaskGroup Default
        {
            get { return default(TaskGroup); }
        }

        /// <summary>A numbered group.</summary>
        public static TaskGroup Numbered(ulong number)
        {
            return new TaskGroup(TaskGroupKind.Numbered, number, null);
        }

        /// <summary>A named group; "" is a valid name.</summary>
        public static TaskGroup Named(string name)
        {
            if (name == null)
            {
                throw new ArgumentNullException("name");
            }
            return new TaskGroup(TaskGroupKind.Named, 0, name);
        }

        public static implicit operator TaskGroup(string name)
        {
            return Named(name);
        }

        public TaskGroupKind Kind
        {
            get { return kind; }
        }

        /// <summary>The number of a numbered group (0 otherwise).</summary>
        public ulong Number
        {
            get { return number; }
        }

        /// <summary>The name of a named group (null otherwise).</summary>
        public string Name
        {
            get { return name; }
        }

        public bool IsDefault
        {
            get { return kind == TaskGroupKind.Default; }
        }

        public bool Equals(TaskGroup other)
        {
            if (kind != other.kind)
            {
                return false;
            }
            switch (kind)
            {
                case TaskGroupKind.Numbered:
                    return number == other.number;
                case TaskGroupKind.Named:
                    return string.Equals(name, other.name, StringComparison.Ordinal);
                default:
                    return true;
            }
        }

        public override bool Equals(object obj)
        {
            return obj is TaskGroup && Equals((TaskGroup)obj);
        }

        public override int GetHashCode()
        {
            switch (kind)
            {
                case TaskGroupKind.Numbered:
                    return number.GetHashCode() * 31 + 1;
                case TaskGroupKind.Named:
                    return StringComparer.Ordinal.GetHashCode(name) * 31 + 2;
                default:
                    return 0;
            }
        }

        public static bool operator ==(TaskGroup a, TaskGroup b)
        {
            return a.Equals(b);
        }

        public static bool operator !=(TaskGroup a, TaskGroup b)
        {
            return !a.Equals(b);
        }

        public override string ToString()
        {
            switch (kind)
            {
                case TaskGroupKind.Numbered:
                    return "#" + number;
                case TaskGroupKind.Named:
                    return "\"" + name + "\"";
                default:
                    return "(default group)";
            }
        }
    }
}
