/* Prints the size of every btm struct the C# binding mirrors, and the
 * offset of every field, as the C compiler lays them out. InteropTests
 * compares these with Marshal.SizeOf / Marshal.OffsetOf of NativeMethods.cs.
 * Built and run by tests/csharp/run.sh. */
#include <stddef.h>
#include <stdio.h>
#include "btm.h"

#define SIZE(T) printf("%s %zu\n", #T, sizeof(struct T))
#define FIELD(T, F) printf("%s.%s %zu\n", #T, #F, offsetof(struct T, F))

int main(void) {
    SIZE(btm_group);
    FIELD(btm_group, kind); FIELD(btm_group, reserved); FIELD(btm_group, value);
    SIZE(btm_value);
    FIELD(btm_value, task_id); FIELD(btm_value, data);
    SIZE(btm_event);
    FIELD(btm_event, kind); FIELD(btm_event, reserved); FIELD(btm_event, task_id);
    FIELD(btm_event, group); FIELD(btm_event, group_name); FIELD(btm_event, results);
    FIELD(btm_event, result_count); FIELD(btm_event, message); FIELD(btm_event, details);
    FIELD(btm_event, progress);
    SIZE(btm_config);
    FIELD(btm_config, struct_size); FIELD(btm_config, max_threads);
    FIELD(btm_config, start_processing); FIELD(btm_config, thread_start);
    FIELD(btm_config, thread_stop); FIELD(btm_config, thread_hook_userdata);
    FIELD(btm_config, thread_hook_free);
    SIZE(btm_stats);
    FIELD(btm_stats, queued); FIELD(btm_stats, blocked); FIELD(btm_stats, running);
    FIELD(btm_stats, undelivered); FIELD(btm_stats, completed_total);
    FIELD(btm_stats, failed_total); FIELD(btm_stats, stopped_total);
    FIELD(btm_stats, threads); FIELD(btm_stats, spawn_failures);
    SIZE(btm_group_stats);
    FIELD(btm_group_stats, queued); FIELD(btm_group_stats, blocked);
    FIELD(btm_group_stats, running); FIELD(btm_group_stats, undelivered);
    SIZE(btm_task_desc);
    FIELD(btm_task_desc, task_fn); FIELD(btm_task_desc, userdata);
    FIELD(btm_task_desc, userdata_free); FIELD(btm_task_desc, group);
    FIELD(btm_task_desc, upstream); FIELD(btm_task_desc, upstream_len);
    FIELD(btm_task_desc, priority); FIELD(btm_task_desc, flags);
    SIZE(btm_stop_report);
    FIELD(btm_stop_report, before_start); FIELD(btm_stop_report, while_running);
    FIELD(btm_stop_report, after_finish);
    return 0;
}
