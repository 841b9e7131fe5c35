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

    /// <summary>UTF-8 conversions for strings crossing the boundary.</summary>
    internal static class Utf8
    {
        /// <summary>NUL-terminated UTF-8 bytes, or null for null.</summary>
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
