/* A plugin DLL that keeps its btm manager in a global and destroys it from
 * DllMain when the process ends, as a C++ plugin with a global
 * btm::Manager does (its destructor runs there). By then Windows has ended
 * every other thread, btm's workers among them: btm_destroy must return
 * (it once waited for those workers forever). Built and run by
 * tests/windows/run.sh with tests/windows/dll_exit.c. */
#include <windows.h>
#include <stdio.h>

#include "btm.h"

static btm_manager *global_manager;

static void empty_task(void *userdata, btm_task_context *context) {
    (void)userdata;
    (void)context;
}

/* Creates the manager and runs one task, so that its workers exist. */
__declspec(dllexport) int plugin_start(void) {
    btm_config cfg;
    btm_config_init(&cfg);
    cfg.max_threads = 2;
    cfg.start_processing = true;
    if (btm_create(&cfg, &global_manager) != BTM_STATUS_OK) return 1;
    btm_task_id id;
    if (btm_add_task(global_manager, empty_task, NULL, NULL, 0, NULL, NULL, 0, &id) != BTM_STATUS_OK) return 2;
    if (btm_wait_idle(global_manager, 20000) != BTM_STATUS_OK) return 3;
    btm_stats st;
    if (btm_get_stats(global_manager, &st) != BTM_STATUS_OK || st.threads == 0) return 4;
    return 0;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved) {
    (void)instance;
    /* reserved != NULL: the process is ending (not FreeLibrary). */
    if (reason == DLL_PROCESS_DETACH && reserved != NULL && global_manager != NULL) {
        btm_destroy(global_manager);
        fprintf(stderr, "dll_exit: btm_destroy returned in DLL_PROCESS_DETACH\n");
        fflush(stderr);
    }
    return TRUE;
}
