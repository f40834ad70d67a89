/* parallel.h — when a loop is worth an OpenMP team.
 *
 * Waking a team costs microseconds (runexp sets OMP_WAIT_POLICY=passive, so sleeping threads
 * are woken by a system call, and on a loaded machine each may wait for a time slice). Below
 * RX_OMP_MIN_WORK elements of light per-element arithmetic (a copy, an axpy, a sampler update)
 * one thread is faster, so every `#pragma omp parallel ... if (...)` compares its element
 * count with this one number. GEMM-sized work is judged in flops instead (kernels/cpu/dense.c). */
#ifndef RX_PARALLEL_H
#define RX_PARALLEL_H

#define RX_OMP_MIN_WORK (1 << 15)

#endif
