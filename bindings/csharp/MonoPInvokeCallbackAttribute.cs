// Unity's IL2CPP (ahead-of-time) backend can only hand a managed method to
// native code when the method is static and marked [MonoPInvokeCallback];
// Unity ships the attribute as AOT.MonoPInvokeCallbackAttribute in
// UnityEngine.dll. Everywhere else (Mono, .NET, Godot) we define the same
// attribute here: IL2CPP and Xamarin match it by name, and other runtimes
// ignore it. Unity defines UNITY_5_3_OR_NEWER in every supported version;
// `UNITY` may be defined by hand for other setups that supply the type.

#if !UNITY && !UNITY_5_3_OR_NEWER
using System;

namespace AOT
{
    /// <summary>Marks a static method that native code calls through a delegate.</summary>
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type type)
        {
            Type = type;
        }

        /// <summary>The delegate type the method is marshalled as.</summary>
        public Type Type { get; private set; }
    }
}
#endif
