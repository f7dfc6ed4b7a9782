"""The probe's C microbenchmarks, and the thin typed layer that loads and calls them.

One generated C file per ISA holds every loop the probe times (GCC vector extensions, so one generator serves
AVX-512, AVX2, NEON and scalar code):

- an integer add chain: 32 dependent register-register `add` instructions per iteration, written in inline asm. An
  add has a latency of one cycle on every core we target, so iterations * 32 / seconds is the clock. This is how the
  clock is read on a VM that exposes no cycle counter;
- the same add chain with 24 independent FMAs beside it in the loop: the clock while the FMA units are busy. The
  FMAs take 24 / N_fma cycles, under the add chain's 32 cycles as long as N_fma > 0.75, so the add chain still
  sets the pace;
- FMA loops with K independent accumulators (K = 1 is the dependent chain that gives the latency);
- the FMA loop run on T OpenMP threads at once, each pinned to its own core, for the multi-core peak.

Every timed function returns the seconds it took (or a negative value when its arguments are refused), and the
Python side divides. Nothing above `Kernels` sees a C pointer.

Traps the generated loops avoid, each of which would let GCC report a fake speed:
- accumulators that start from the same value compute the same numbers and GCC merges them (one FMA doing the work
  of several, a fake 1.5x peak): every accumulator starts from a different value;
- a multiplier the compiler can see is constant invites it to fold or reorder the chain: it goes through an empty
  `asm volatile` every iteration, which costs no instruction but hides its value;
- a result nobody reads lets the loop be deleted: every loop stores its sum to a volatile sink.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from directconv.core.isa import Isa, get_isa
from directconv.kernels import compiler, ffi

SIGNATURES = """
double dc_probe_add(long iters);
double dc_probe_add_fma(long iters);
double dc_probe_fma(int k, long iters);
double dc_probe_peak(int k, long iters, int threads, const int *cpus, int ncpus, int *pinned);
int dc_probe_fma_per_iter(int k);
"""

ADDS_PER_ITER = 32  # length of the add chain in one loop iteration (the clock loop)
MIX_FMAS_PER_ITER = 24  # FMAs beside the add chain: fewer cycles than the 32 adds while N_fma > 0.75
MIX_CHAINS = 12  # accumulators beside the add chain: 2 FMAs each per iteration, 8-10 cycles deep, under 32
FMAS_PER_ITER = 48  # target FMAs per loop iteration in the K loops: the loop overhead hides behind them


def accumulator_counts(isa: Isa) -> tuple[int, ...]:
    """The K values the throughput sweep tries, each leaving two registers for the multiplier and the addend.

    They reach past latency x pipes of any current core (8 for 4-cycle latency and 2 pipes, 10 for 5 x 2), so the
    sweep sees throughput saturate rather than assume it.
    """
    candidates = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24)
    return tuple(k for k in candidates if k + 2 <= isa.registers)


def fmas_per_iteration(k: int) -> int:
    """FMAs one iteration of the K loop performs: the smallest multiple of K not under FMAS_PER_ITER."""
    return -(-FMAS_PER_ITER // k) * k


def _chains(prefix: str, k: int, reps: int, first: str) -> tuple[str, str, str]:
    """C text for K independent multiply-add chains: (declarations, loop body of `reps` rounds, their sum). Chain i
    starts at `first` (a C expression) + 0.001 * (i + 1).

    Each chain starts from its own value (see the module docstring); all converge to c / (1 - b) = 1, so no
    denormal or infinity ever slows the loop.
    """
    names = [f"{prefix}{i}" for i in range(k)]
    init = "\n".join(f"    vf {n} = (vf){{0}} + ({first} + {0.001 * (i + 1):.3f}f);" for i, n in enumerate(names))
    step = "\n".join(f"        {n} = {n} * b + c;" for n in names)
    return init, "\n".join([step] * reps), " + ".join(names)


def _k_loop(k: int) -> str:
    init, body, total = _chains("a", k, fmas_per_iteration(k) // k, "seed")
    return f"""
static void fma_k{k}(long iters, float seed) {{
    vf b = (vf){{0}} + 0.99999f;
    vf c = (vf){{0}} + 1e-5f;
{init}
    for (long i = 0; i < iters; i++) {{
        OPAQUE(b);
{body}
    }}
    sink({total});
}}
"""


def probe_source(isa: Isa) -> str:
    """C source of the probe's loops for `isa` (see the module docstring for what each function measures).

    Contract: every exported function is thread-safe apart from `dc_probe_peak`, which changes and then restores the
    CPU affinity of the OpenMP threads it runs on; none allocates memory.
    """
    ks = accumulator_counts(isa)
    loops = "".join(_k_loop(k) for k in ks)
    cases = "\n".join(f"    case {k}: fma_k{k}(iters, seed); return 0;" for k in ks)
    per_iter = "\n".join(f"    case {k}: return {fmas_per_iteration(k)};" for k in ks)
    adds = " ".join(["ADD1"] * ADDS_PER_ITER)
    mix_init, mix_body, mix_total = _chains("m", MIX_CHAINS, MIX_FMAS_PER_ITER // MIX_CHAINS, "1.0f")
    return f"""/* directconv probe microbenchmarks for {isa.name}: {isa.lanes}-lane fp32 vectors. */
#define _GNU_SOURCE
#include <omp.h>
#include <time.h>
#ifdef __linux__
#include <sched.h>
#endif

/* The vector types carry the parallelism; auto-vectorizing the 1-lane variant would time a wider unit. */
#pragma GCC optimize("no-tree-vectorize")

#define LANES {isa.lanes}
#if LANES == 1
/* A plain float: a 1-lane vector type does not fit the register constraints below. */
typedef float vf;
#define LANE(s, l) (s)
#else
typedef float vf __attribute__((vector_size(4 * LANES)));
#define LANE(s, l) ((s)[l])
#endif
/* OPAQUE keeps a vector in a register and hides its value from the optimizer; ADD1 is one dependent 1-cycle
   register-register add (not add-immediate, which some cores fold at rename). */
#if defined(__x86_64__)
#define OPAQUE(v) __asm__ volatile("" : "+x"(v))
#define ADD1 "add %1, %0\\n\\t"
#elif defined(__aarch64__)
#define OPAQUE(v) __asm__ volatile("" : "+w"(v))
#define ADD1 "add %0, %0, %1\\n\\t"
#else
#error "the probe's add chain is written for x86-64 and aarch64"
#endif

volatile float dc_probe_sink;

static void sink(vf s) {{
    float t = 0.0f;
    for (int l = 0; l < LANES; l++) t += LANE(s, l);
    dc_probe_sink = t;
}}

static double now(void) {{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}}

double dc_probe_add(long iters) {{
    long x = 0, one = 1;
    double t0 = now();
    for (long i = 0; i < iters; i++)
        __asm__ volatile({adds} : "+r"(x) : "r"(one));
    double t = now() - t0;
    dc_probe_sink = (float)x;
    return t;
}}

double dc_probe_add_fma(long iters) {{
    long x = 0, one = 1;
    vf b = (vf){{0}} + 0.99999f;
    vf c = (vf){{0}} + 1e-5f;
{mix_init}
    double t0 = now();
    for (long i = 0; i < iters; i++) {{
        __asm__ volatile({adds} : "+r"(x) : "r"(one));
        OPAQUE(b);
{mix_body}
    }}
    double t = now() - t0;
    sink({mix_total});
    dc_probe_sink += (float)x;
    return t;
}}
{loops}
static int run_fma(int k, long iters, float seed) {{
    switch (k) {{
{cases}
    }}
    return -1;
}}

int dc_probe_fma_per_iter(int k) {{
    switch (k) {{
{per_iter}
    }}
    return -1;
}}

double dc_probe_fma(int k, long iters) {{
    double t0 = now();
    if (run_fma(k, iters, 1.0f) != 0) return -1.0;
    return now() - t0;
}}

/* All `threads` threads run the K loop at once; returns the seconds from the barrier before to the barrier after.
   With ncpus >= threads, thread t runs pinned to cpus[t] (one per physical core, so that two threads never share a
   core's FMA units), and gets its previous affinity back afterwards; *pinned counts the threads that were. */
double dc_probe_peak(int k, long iters, int threads, const int *cpus, int ncpus, int *pinned) {{
    if (threads < 1 || dc_probe_fma_per_iter(k) < 0) return -1.0;
    double start = 0.0, stop = 0.0;
    int ran = 0;
    *pinned = 0;
    omp_set_dynamic(0);
    #pragma omp parallel num_threads(threads)
    {{
        int t = omp_get_thread_num();
#ifdef __linux__
        cpu_set_t saved;
        int mine = 0;
        if (ncpus >= threads && sched_getaffinity(0, sizeof saved, &saved) == 0) {{
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpus[t], &one);
            mine = sched_setaffinity(0, sizeof one, &one) == 0;
        }}
        #pragma omp atomic
        *pinned += mine;
#endif
        #pragma omp barrier
        #pragma omp master
        {{
            ran = omp_get_num_threads();
            start = now();
        }}
        run_fma(k, iters, 1.0f + (float)t);
        #pragma omp barrier
        #pragma omp master
        stop = now();
#ifdef __linux__
        if (mine) sched_setaffinity(0, sizeof saved, &saved);
#endif
    }}
    if (ran != threads) return -1.0;
    return stop - start;
}}
"""


@dataclass(frozen=True)
class Kernels:
    """The probe's loops for one ISA, compiled and loaded. Every method returns seconds (> 0) or raises."""

    isa: Isa
    path: Path  # the compiled library, for reading its code (objdump)
    _lib: Any

    def add(self, iters: int) -> float:
        return self._check(self._lib.dc_probe_add(iters), "dc_probe_add", iters)

    def add_fma(self, iters: int) -> float:
        return self._check(self._lib.dc_probe_add_fma(iters), "dc_probe_add_fma", iters)

    def fma(self, k: int, iters: int) -> float:
        return self._check(self._lib.dc_probe_fma(k, iters), f"dc_probe_fma(k={k})", iters)

    def peak(self, k: int, iters: int, threads: int, cpus: tuple[int, ...]) -> tuple[float, bool]:
        """(seconds for `threads` threads to each run `iters` iterations of the K loop at once, whether every thread
        ran pinned). Threads are pinned to `cpus` (one each) when enough are given and the OS allows it."""
        arr = ffi.ints(list(cpus) or [0])
        pinned = ffi.int_out()
        seconds = self._lib.dc_probe_peak(k, iters, threads, arr, len(cpus), pinned)
        return self._check(seconds, f"dc_probe_peak(k={k}, threads={threads})", iters), pinned[0] == threads

    @staticmethod
    def _check(seconds: float, what: str, iters: int) -> float:
        if not seconds > 0:
            raise RuntimeError(
                f"probe microbenchmark {what} returned {seconds} for iters={iters}: expected a positive time "
                "(a refused K or thread count, or a clock that did not advance)"
            )
        return float(seconds)


@functools.cache
def load(isa_name: str) -> Kernels:
    """The probe's loops for `isa_name`, compiled on first use (cached on disk by kernels.compiler)."""
    isa = get_isa(isa_name)
    path = compiler.build(probe_source(isa), isa.flags, name=f"probe-{isa.name}")
    return Kernels(isa, path, ffi.load(path, SIGNATURES))
