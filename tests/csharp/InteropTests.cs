// Checks of the raw layer against the C library it mirrors: entry points
// (also checked against `nm -D` by run.sh), parameter counts and return
// kinds against include/btm.h, struct layouts against the C compiler.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Btm.Native;

namespace Btm.Tests
{
    public static class InteropTests
    {
        private static IEnumerable<MethodInfo> PInvokes()
        {
            return typeof(NativeMethods).GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
                .Where(m => (m.Attributes & MethodAttributes.PinvokeImpl) != 0);
        }

        /// <summary>The repository root: $BTM_ROOT, else the first parent of the exe holding include/btm.h.</summary>
        private static string RepoRoot()
        {
            string env = Environment.GetEnvironmentVariable("BTM_ROOT");
            if (!string.IsNullOrEmpty(env))
            {
                return env;
            }
            string dir = Path.GetDirectoryName(typeof(InteropTests).Assembly.Location);
            while (dir != null && !File.Exists(Path.Combine(dir, "include/btm.h")))
            {
                dir = Path.GetDirectoryName(dir);
            }
            if (dir == null)
            {
                throw new TestFailure("cannot find include/btm.h above the test exe; set BTM_ROOT");
            }
            return dir;
        }

        [Test]
        public static void EveryEntryPointResolvesInTheLoadedLibrary()
        {
            int n = 0;
            foreach (MethodInfo m in PInvokes())
            {
                try
                {
                    Marshal.Prelink(m);
                }
                catch (Exception ex)
                {
                    throw new TestFailure(m.Name + " does not resolve: " + ex.Message);
                }
                n++;
            }
            Check.True(n >= 29, "at least the 29 functions of btm 0.1 are declared (found " + n + ")");
        }

        [Test]
        public static void DeclarationsMatchTheHeader()
        {
            string header = File.ReadAllText(Path.Combine(RepoRoot(), "include/btm.h"));
            // Drop comments, then read every prototype `ret btm_name(params);`.
            header = Regex.Replace(header, @"/\*.*?\*/", " ", RegexOptions.Singleline);
            header = Regex.Replace(header, @"//[^\n]*", " ");
            var prototypes = new Dictionary<string, KeyValuePair<bool, int>>();
            foreach (Match match in Regex.Matches(header, @"(?<ret>[A-Za-z_][\w\s\*]*?)\s*\b(?<name>btm_\w+)\s*\((?<params>[^;{}]*?)\)\s*;", RegexOptions.Singleline))
            {
                string ret = Regex.Replace(match.Groups["ret"].Value, @"\s+", " ").Trim();
                string ps = match.Groups["params"].Value.Trim();
                int count = ps.Length == 0 || ps == "void" ? 0 : ps.Split(',').Length;
                bool returnsVoid = ret == "void" || ret.EndsWith(" void", StringComparison.Ordinal);
                prototypes[match.Groups["name"].Value] = new KeyValuePair<bool, int>(returnsVoid, count);
            }
            Check.True(prototypes.Count >= 29, "parsed the header's prototypes (found " + prototypes.Count + ")");

            var declared = PInvokes().ToDictionary(m => m.Name);
            var problems = new List<string>();
            foreach (var p in prototypes.OrderBy(p => p.Key))
            {
                MethodInfo m;
                if (!declared.TryGetValue(p.Key, out m))
                {
                    problems.Add(p.Key + ": in btm.h, not in NativeMethods.cs");
                    continue;
                }
                int csCount = m.GetParameters().Length;
                if (csCount != p.Value.Value)
                {
                    problems.Add(string.Format("{0}: {1} parameters in btm.h, {2} in NativeMethods.cs", p.Key, p.Value.Value, csCount));
                }
                bool csVoid = m.ReturnType == typeof(void);
                if (csVoid != p.Value.Key)
                {
                    problems.Add(p.Key + ": return type differs in kind (void / non-void)");
                }
            }
            foreach (string name in declared.Keys.Where(n => !prototypes.ContainsKey(n)))
            {
                problems.Add(name + ": in NativeMethods.cs, not in btm.h");
            }
            Check.True(problems.Count == 0, "NativeMethods.cs matches btm.h:\n" + string.Join("\n", problems));
        }

        [Test]
        public static void StructLayoutsMatchTheCCompiler()
        {
            string path = Environment.GetEnvironmentVariable("BTM_LAYOUT_FILE");
            if (string.IsNullOrEmpty(path))
            {
                path = Path.Combine(RepoRoot(), "build/csharp/layout.txt");
            }
            Check.True(File.Exists(path), "the layout file from tests/csharp/layout.c exists (run tests/csharp/run.sh): " + path);
            var types = new Dictionary<string, Type>
            {
                { "btm_group", typeof(BtmGroup) },
                { "btm_value", typeof(BtmValue) },
                { "btm_event", typeof(BtmEvent) },
                { "btm_config", typeof(BtmConfig) },
                { "btm_stats", typeof(BtmStats) },
                { "btm_group_stats", typeof(BtmGroupStats) },
                { "btm_stop_report", typeof(BtmStopReport) },
                { "btm_task_desc", typeof(BtmTaskDesc) },
            };
            var problems = new List<string>();
            var seenFields = new HashSet<string>();
            int lines = 0;
            foreach (string line in File.ReadAllLines(path).Where(l => l.Trim().Length > 0))
            {
                lines++;
                string[] parts = line.Split(' ');
                string[] names = parts[0].Split('.');
                long expected = long.Parse(parts[1]);
                Type t;
                if (!types.TryGetValue(names[0], out t))
                {
                    problems.Add("no C# mirror for " + names[0]);
                    continue;
                }
                if (names.Length == 1)
                {
                    long size = Marshal.SizeOf(t);
                    if (size != expected)
                    {
                        problems.Add(string.Format("sizeof({0}) = {1} in C, {2} in C#", names[0], expected, size));
                    }
                }
                else
                {
                    seenFields.Add(t.Name + "." + names[1]);
                    if (t.GetField(names[1]) == null)
                    {
                        problems.Add(string.Format("{0}.{1}: no such field in C#", names[0], names[1]));
                        continue;
                    }
                    long offset = Marshal.OffsetOf(t, names[1]).ToInt64();
                    if (offset != expected)
                    {
                        problems.Add(string.Format("offsetof({0}, {1}) = {2} in C, {3} in C#", names[0], names[1], expected, offset));
                    }
                }
            }
            foreach (Type t in types.Values)
            {
                foreach (FieldInfo f in t.GetFields(BindingFlags.Instance | BindingFlags.Public))
                {
                    if (!seenFields.Contains(t.Name + "." + f.Name))
                    {
                        problems.Add(t.Name + "." + f.Name + ": not checked by layout.c");
                    }
                }
            }
            Check.True(lines > 40, "layout file has content");
            Check.True(problems.Count == 0, "layouts match:\n" + string.Join("\n", problems));
            Check.Equal(80, Marshal.SizeOf(typeof(BtmEvent)), "btm_event blittable size");
            if (IntPtr.Size == 8)
            {
                Check.Equal(64, Marshal.SizeOf(typeof(BtmTaskDesc)), "btm_task_desc size on 64-bit");
            }
            // Blittable: an array of descriptors is pinned by the marshaller, not
            // copied (GCHandle.Alloc(Pinned) throws for a non-blittable type).
            GCHandle.Alloc(new BtmTaskDesc[1], GCHandleType.Pinned).Free();
        }

        [Test]
        public static void ConstantsMatchTheHeader()
        {
            string header = File.ReadAllText(Path.Combine(RepoRoot(), "include/btm.h"));
            Func<string, long> define = name =>
            {
                Match d = Regex.Match(header, @"#define " + name + @"\s+(\d+)");
                Check.True(d.Success, name + " in btm.h");
                return long.Parse(d.Groups[1].Value);
            };
            Check.Equal((long)NativeMethods.TaskPassThrough, define("BTM_TASK_PASS_THROUGH"), "BTM_TASK_PASS_THROUGH");
            Check.Equal((long)NativeMethods.DefaultMaxThreads, define("BTM_DEFAULT_MAX_THREADS"), "BTM_DEFAULT_MAX_THREADS");
            Check.Equal((long)NativeMethods.MaxThreadsLimit, define("BTM_MAX_THREADS_LIMIT"), "BTM_MAX_THREADS_LIMIT");
            // 1 << 63 does not fit a long.
            Match inBatch = Regex.Match(header, @"#define BTM_IN_BATCH\s+(\d+)");
            Check.True(inBatch.Success, "BTM_IN_BATCH in btm.h");
            Check.Equal(NativeMethods.InBatch, ulong.Parse(inBatch.Groups[1].Value), "BTM_IN_BATCH");
        }

        // The raw contract AddTasks relies on: when btm_add_tasks fails, btm
        // frees every descriptor's userdata itself (once each), whichever
        // descriptor was bad, and writes no id.
        [Test]
        public static void AddTasksFreesEveryUserdataWhenADescriptorIsBad()
        {
            var config = new BtmConfig();
            Check.Equal(BtmStatus.Ok, NativeMethods.btm_config_init(ref config), "btm_config_init");
            BtmManagerHandle manager;
            Check.Equal(BtmStatus.Ok, NativeMethods.btm_create(ref config, out manager), "btm_create");
            using (manager)
            {
                Func<uint, IntPtr, BtmTaskDesc> desc = (flags, fn) => new BtmTaskDesc
                {
                    task_fn = fn,
                    userdata = Bridge.Alloc(new Action(() => { throw new TestFailure("a rejected task ran"); })),
                    userdata_free = Bridge.FreeHandleFnPtr,
                    flags = flags,
                };
                var cases = new List<KeyValuePair<string, Func<BtmTaskDesc>>>
                {
                    new KeyValuePair<string, Func<BtmTaskDesc>>("unknown flags bit", () => desc(2, Bridge.RunTaskFnPtr)),
                    new KeyValuePair<string, Func<BtmTaskDesc>>("task_fn on a pass-through", () => desc(NativeMethods.TaskPassThrough, Bridge.RunTaskFnPtr)),
                    new KeyValuePair<string, Func<BtmTaskDesc>>("no task_fn", () => desc(0, IntPtr.Zero)),
                    new KeyValuePair<string, Func<BtmTaskDesc>>("upstream NULL with a length", () =>
                    {
                        BtmTaskDesc d = desc(0, Bridge.RunTaskFnPtr);
                        d.upstream_len = (UIntPtr)1u;
                        return d;
                    }),
                    new KeyValuePair<string, Func<BtmTaskDesc>>("group kind out of range", () =>
                    {
                        BtmTaskDesc d = desc(0, Bridge.RunTaskFnPtr);
                        d.group.kind = 99;
                        return d;
                    }),
                };
                var expected = new[] { BtmStatus.InvalidArgument, BtmStatus.InvalidArgument, BtmStatus.NullArgument, BtmStatus.InvalidArgument, BtmStatus.InvalidGroup };
                for (int i = 0; i < cases.Count; i++)
                {
                    string what = cases[i].Key;
                    // A good task, the bad one, a good pass-through: three handles.
                    var descs = new[] { desc(0, Bridge.RunTaskFnPtr), cases[i].Value(), desc(NativeMethods.TaskPassThrough, IntPtr.Zero) };
                    Check.Equal(3L, Bridge.LiveHandles, what + ": live handles before the call");
                    var ids = new ulong[] { 7, 7, 7 };
                    Check.Equal(expected[i], NativeMethods.btm_add_tasks(manager, descs, (UIntPtr)3u, ids), what + ": status");
                    Check.Equal(0L, Bridge.LiveHandles, what + ": btm freed all three userdata");
                    Check.SequenceEqual(new ulong[] { 7, 7, 7 }, ids, what + ": no id written");
                }
                var none = new ulong[0];
                Check.Equal(BtmStatus.Ok, NativeMethods.btm_add_tasks(manager, null, UIntPtr.Zero, null), "count 0 with NULL arrays");
                Check.Equal(BtmStatus.Ok, NativeMethods.btm_add_tasks(manager, new BtmTaskDesc[0], UIntPtr.Zero, none), "count 0");
                BtmStats stats;
                Check.Equal(BtmStatus.Ok, NativeMethods.btm_get_stats(manager, out stats), "btm_get_stats");
                Check.Equal(0UL, stats.queued + stats.blocked + stats.running + stats.undelivered, "nothing added");
            }
            Check.Equal(0L, Bridge.LiveHandles, "every userdata freed by btm");
        }

        [Test]
        public static void ConfigInitFillsDefaultsAndSize()
        {
            var config = new BtmConfig();
            Check.Equal(BtmStatus.Ok, NativeMethods.btm_config_init(ref config), "btm_config_init");
            Check.Equal((uint)Marshal.SizeOf(typeof(BtmConfig)), config.struct_size, "struct_size equals the C# marshalled size");
            Check.Equal(0, config.max_threads, "default max_threads");
            Check.Equal(false, config.start_processing, "default start_processing");
        }

        [Test]
        public static void VersionAndStatusStrings()
        {
            string header = File.ReadAllText(Path.Combine(RepoRoot(), "include/btm.h"));
            Match v = Regex.Match(header, "#define BTM_VERSION \"([^\"]+)\"");
            Check.True(v.Success, "BTM_VERSION in btm.h");
            Check.Equal(v.Groups[1].Value, BackgroundTaskManager.NativeVersion, "btm_version() matches the header");
            foreach (BtmStatus s in Enum.GetValues(typeof(BtmStatus)))
            {
                string text = BtmException.StatusText(s);
                Check.True(!string.IsNullOrEmpty(text) && text != s.ToString(), "btm_status_str(" + s + ") is a description");
            }
            Check.True(BtmException.StatusText((BtmStatus)999).Length > 0, "unknown codes get a description too");
        }
    }
}
