/* Loads tests/windows/dll_exit_plugin.c's DLL, starts its manager and
 * returns from main: the process must end (see the plugin). */
#include <windows.h>
#include <stdio.h>

int main(void) {
    HMODULE plugin = LoadLibraryA("dll_exit_plugin.dll");
    if (plugin == NULL) {
        fprintf(stderr, "dll_exit: LoadLibrary failed (%lu)\n", (unsigned long)GetLastError());
        return 1;
    }
    int (*start)(void) = (int (*)(void))(void (*)(void))GetProcAddress(plugin, "plugin_start");
    if (start == NULL) return 1;
    int rc = start();
    fprintf(stderr, "dll_exit: plugin_start returned %d; returning from main\n", rc);
    return rc;
}
