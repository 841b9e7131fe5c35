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
    /// use. Two named groups are equal exactly when their names are equal
    /// ordinally, in C# and in btm: a name that btm could not receive exactly
    /// (containing '\0' or an unpaired surrogate) is rejected with an
    /// <see cref="ArgumentException"/> when the group is created.
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

        /// <summary>
        /// A named group; "" is a valid name, and so is any other string that
        /// has exactly one NUL-terminated UTF-8 form. Names are compared
        /// ordinally (no Unicode normalisation: "\u00e9" and "e\u0301" are two
        /// groups), in C# as in btm.
        /// </summary>
        /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
        /// <exception cref="ArgumentException">
        /// <paramref name="name"/> contains '\0' or an unpaired surrogate (invalid
        /// UTF-16): btm would see a different name (cut at the '\0', or with
        /// U+FFFD in place of the surrogate), shared with other strings.
        /// </exception>
        public static TaskGroup Named(string name)
        {
            if (name == null)
            {
                throw new ArgumentNullException("name");
            }
            Utf8.CheckName(name, "name", "The group name");
            return new TaskGroup(TaskGroupKind.Named, 0, name);
        }

        /// <summary>
        /// <c>TaskGroup.Named(name)</c>, with the same exceptions (so a name
        /// with '\0' or an unpaired surrogate throws where it is converted).
        /// </summary>
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
