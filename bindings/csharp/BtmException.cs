using System;
using System.Runtime.InteropServices;
using System.Text;
using Btm.Native;

namespace Btm
{
    /// <summary>A btm call failed; <see cref="Status"/> is the C API's status code.</summary>
    [Serializable]
    public sealed class BtmException : Exception
    {
        public BtmException(BtmStatus status, string context)
            : base(Describe(status, context))
        {
            Status = status;
        }

        /// <summary>The status code the C function returned.</summary>
        public BtmStatus Status { get; private set; }

        private static string Describe(BtmStatus status, string context)
        {
            string text = StatusText(status);
            return context == null
                ? string.Format("btm: {0} ({1})", text, status)
                : string.Format("{0}: {1} ({2})", context, text, status);
        }

        /// <summary>btm_status_str: the library's own description of a status code.</summary>
        public static string StatusText(BtmStatus status)
        {
            try
            {
                return Utf8.FromNative(NativeMethods.btm_status_str((uint)status));
            }
            catch (Exception)
            {
                // Library not loadable: still produce a message.
                return status.ToString();
            }
        }

        /// <summary>The one place a failed status becomes an exception.</summary>
        internal static void ThrowIfFailed(BtmStatus status, string context)
        {
            if (status != BtmStatus.Ok)
            {
                throw new BtmException(status, context);
            }
        }
    }

    /// <summary>
    /// UTF-8 conversions for strings crossing the boundary. Two kinds of
    /// string go to btm: names that identify something (group names), which
    /// must arrive exactly (<see cref="NameToNative"/>, which rejects what
    /// cannot), and free text (failure messages and details, progress
    /// messages), which is converted leniently (<see cref="ToNative"/>).
    /// </summary>
    internal static class Utf8
    {
        /// <summary>
        /// Throws <see cref="ArgumentException"/> (for <paramref name="paramName"/>)
        /// unless <paramref name="s"/> has exactly one NUL-terminated UTF-8
        /// form: no '\0' (C would see the string end there) and no unpaired
        /// surrogate (UTF-8 cannot encode one; a lenient encoder would turn
        /// every one into U+FFFD, making different names equal). Any other
        /// string, "" included, is accepted. Allocates nothing unless it throws.
        /// </summary>
        internal static void CheckName(string s, string paramName, string what)
        {
            for (int i = 0; i < s.Length; i++)
            {
                char c = s[i];
                string problem = null;
                if (c == '\0')
                {
                    problem = "an embedded '\\0' (U+0000)";
                }
                else if (char.IsHighSurrogate(c))
                {
                    if (i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
                    {
                        i++;
                        continue;
                    }
                    problem = string.Format("an unpaired high surrogate (U+{0:X4})", (int)c);
                }
                else if (char.IsLowSurrogate(c))
                {
                    problem = string.Format("an unpaired low surrogate (U+{0:X4})", (int)c);
                }
                if (problem != null)
                {
                    throw new ArgumentException(string.Format(
                        "{0} contains {1} at index {2}: btm takes names as NUL-terminated UTF-8 strings, so a name must not contain '\\0' and must be valid UTF-16 (no unpaired surrogate), or two different names could reach btm as the same one",
                        what, problem, i), paramName);
                }
            }
        }

        /// <summary>
        /// The exact NUL-terminated UTF-8 form of a name (never null for a
        /// non-null name); throws <see cref="ArgumentException"/> as
        /// <see cref="CheckName"/> does, before anything reaches btm.
        /// </summary>
        internal static byte[] NameToNative(string s, string paramName, string what)
        {
            if (s == null)
            {
                throw new ArgumentNullException(paramName);
            }
            CheckName(s, paramName, what);
            return ToNative(s);
        }

        /// <summary>
        /// NUL-terminated UTF-8 bytes, or null for null. Lenient, for free
        /// text only: an embedded '\0' ends the string as btm sees it and an
        /// unpaired surrogate becomes U+FFFD. Names go through
        /// <see cref="NameToNative"/>.
        /// </summary>
        internal static byte[] ToNative(string s)
        {
            if (s == null)
            {
                return null;
            }
            int n = Encoding.UTF8.GetByteCount(s);
            byte[] bytes = new byte[n + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

        /// <summary>Copies a NUL-terminated UTF-8 string owned by btm (null for NULL).</summary>
        internal static string FromNative(IntPtr p)
        {
            if (p == IntPtr.Zero)
            {
                return null;
            }
            int len = 0;
            while (Marshal.ReadByte(p, len) != 0)
            {
                len++;
            }
            if (len == 0)
            {
                return string.Empty;
            }
            byte[] bytes = new byte[len];
            Marshal.Copy(p, bytes, 0, len);
            return Encoding.UTF8.GetString(bytes);
        }
    }
}
