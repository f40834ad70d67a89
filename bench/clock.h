/* clock.h — the benchmarks' two clocks. Wall time is what a user waits; CPU time of all the
 * process's threads says, on a shared busy machine, how much of the cores a run actually got
 * (CPU time / wall time / threads: the "share" the benches print). */
#ifndef RX_BENCH_CLOCK_H
#define RX_BENCH_CLOCK_H
#include <time.h>

static inline double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static inline double now_s(void) { return clock_s(CLOCK_MONOTONIC); }
static inline double cpu_s(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }
#endif
