/* LD_PRELOAD shim used to check that the fuzzer's checks have teeth:
 * SHIM_MODE=1 drops one event in 40 polls, 2 duplicates a final event,
 * 3 swaps two adjacent events, 4 skips one free call of a result/payload
 * (leak), 5 runs a free function twice. */
#define _GNU_SOURCE
#include "btm.h"
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
static int mode(void) { const char *s = getenv("SHIM_MODE"); return s ? atoi(s) : 0; }
static unsigned long n;
btm_status btm_poll_events(btm_manager *m, btm_event *ev, size_t cap, size_t *cnt) {
    static btm_status (*real)(btm_manager *, btm_event *, size_t, size_t *);
    if (!real) real = (btm_status(*)(btm_manager *, btm_event *, size_t, size_t *))dlsym(RTLD_NEXT, "btm_poll_events");
    btm_status s = real(m, ev, cap, cnt);
    if (s || !cnt || *cnt == 0) return s;
    n++;
    int md = mode();
    if (md == 1 && n % 40 == 0) { memmove(ev, ev + 1, (*cnt - 1) * sizeof *ev); (*cnt)--; }
    if (md == 2 && n % 40 == 0 && *cnt < cap && (ev[0].kind == 1 || ev[0].kind == 2)) { ev[*cnt] = ev[0]; (*cnt)++; }
    if (md == 3 && n % 10 == 0 && *cnt >= 2) { btm_event t = ev[0]; ev[0] = ev[1]; ev[1] = t; }
    return s;
}
