// A small stand-in for the parts of UnityEngine.dll the Unity sample uses,
// so the sample compiles (and can be driven by UnityStubPlayer.cs) where
// Unity is not installed. Only signatures matter; behaviour is minimal.
// Like the real UnityEngine.dll, it also provides AOT.MonoPInvokeCallbackAttribute.

using System;

namespace UnityEngine
{
    public class Object
    {
        public string name { get; set; }

        public static void Destroy(Object obj)
        {
        }
    }

    public class Component : Object
    {
    }

    public class Behaviour : Component
    {
        private bool isEnabled = true;

        public bool enabled
        {
            get { return isEnabled; }
            set { isEnabled = value; }
        }
    }

    public class MonoBehaviour : Behaviour
    {
    }

    public static class Debug
    {
        public static void Log(object message)
        {
            Console.WriteLine("[Unity] " + message);
        }

        public static void LogWarning(object message)
        {
            Console.WriteLine("[Unity warning] " + message);
        }

        public static void LogError(object message)
        {
            Console.WriteLine("[Unity error] " + message);
        }

        public static void LogException(Exception exception)
        {
            Console.WriteLine("[Unity exception] " + exception);
        }
    }

    public static class Time
    {
        public static int frameCount { get; set; }
        public static float deltaTime { get; set; }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class SerializeField : Attribute
    {
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class TooltipAttribute : Attribute
    {
        public TooltipAttribute(string tooltip)
        {
        }
    }

    [AttributeUsage(AttributeTargets.Class)]
    public sealed class DisallowMultipleComponent : Attribute
    {
    }
}

namespace AOT
{
    [AttributeUsage(AttributeTargets.Method)]
    public class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type type)
        {
        }
    }
}
