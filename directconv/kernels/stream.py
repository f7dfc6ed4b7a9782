"""The memory-bandwidth loop, and the thin typed layer that loads and calls it.

One generated C function per ISA (GCC vector extensions, as the probe's FMA loops in kernels/fma.py):

    int dc_stream(const float *src, long n_src, float *dst, long n_dst, float fill, int threads)

reads all `n_src` floats of `src` and writes all `n_dst` floats of `dst` once, on `threads` OpenMP threads (one
parallel region, as the convolution kernels use, skipped for one thread). Thread t of T reads the t-th of T equal
runs of whole vectors of `src`, then writes the t-th run of `dst`; thread 0 also does the floats past the last
whole vector. It returns 0, or -1 for refused arguments (a thread count below 1, a negative length, a non-empty
buffer not aligned to one vector).

    double dc_stream_seconds(..., int threads, long passes)

runs `passes` passes and returns their seconds, timed in C (as a kernel's dc_bench is: no interpreter between
passes), or -1 for refused arguments or a pass count below 1.

This is the least traffic a layer that reads its input and weights once and writes its output once must make, in
plain loads and stores (no non-temporal stores, which the convolution kernels do not use either), so timing it
says how fast the memory system moves that many bytes with that many threads.

Traps the generated loop avoids, each of which would let GCC report a fake speed:
- one accumulator would make the reads wait on the add latency (a few cycles per vector, under what L1 can
  deliver): the reads sum into 8 independent vector accumulators;
- reads whose sum nobody uses let the loop be deleted: the sum goes to a volatile sink;
- a store of a constant the compiler can see may become a memset of another speed: the stored value is the
  caller's `fill`, unknown when compiling.
Nothing above `Kernels` sees a C pointer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from directconv.core import checks
from directconv.core.isa import Isa, get_isa
from directconv.kernels import compiler, ffi, layout

SIGNATURES = """
int dc_stream(const float *src, long n_src, float *dst, long n_dst, float fill, int threads);
double dc_stream_seconds(const float *src, long n_src, float *dst, long n_dst, float fill, int threads, long passes);
"""

ACCUMULATORS = 8  # independent read chains: more than add latency x add pipes on any core we target


def stream_source(isa: Isa) -> str:
    """C source of the bandwidth loop for `isa` (see the module docstring for its contract).

    Contract: thread-safe (no state but the volatile sink, whose value nobody reads); allocates nothing.
    """
    accs = [f"a{i}" for i in range(ACCUMULATORS)]
    init = " ".join(f"vf {a} = (vf){{0}};" for a in accs)
    step = " ".join(f"{a} += v[i + {i}];" for i, a in enumerate(accs))
    total = " + ".join(accs)
    return f"""/* directconv memory-bandwidth loop for {isa.name}: {isa.lanes}-lane fp32 vectors. */
#include <stdint.h>
#include <time.h>
#include <omp.h>

#define LANES {isa.lanes}
#if LANES == 1
typedef float vf;
#define LANE(s, l) (s)
#else
typedef float vf __attribute__((vector_size(4 * LANES)));
#define LANE(s, l) ((s)[l])
#endif

volatile float dc_stream_sink;

static vf read_vectors(const vf *v, long begin, long end) {{
    {init}
    long i = begin;
    for (; i + {ACCUMULATORS} <= end; i += {ACCUMULATORS}) {{
        {step}
    }}
    for (; i < end; i++) a0 += v[i];
    return {total};
}}

static void write_vectors(vf *v, long begin, long end, vf value) {{
    for (long i = begin; i < end; i++) v[i] = value;
}}

int dc_stream(const float *src, long n_src, float *dst, long n_dst, float fill, int threads) {{
    if (threads < 1 || n_src < 0 || n_dst < 0) return -1;
    if ((n_src && (uintptr_t)src % sizeof(vf)) || (n_dst && (uintptr_t)dst % sizeof(vf))) return -1;
    long vs = n_src / LANES, vd = n_dst / LANES;
    float total = 0.0f;
    #pragma omp parallel num_threads(threads) if(threads > 1) reduction(+:total)
    {{
        long t = omp_get_thread_num(), nt = omp_get_num_threads();
        vf s = read_vectors((const vf *)src, vs * t / nt, vs * (t + 1) / nt);
        write_vectors((vf *)dst, vd * t / nt, vd * (t + 1) / nt, (vf){{0}} + fill);
        for (int l = 0; l < LANES; l++) total += LANE(s, l);
        if (t == 0) {{
            for (long i = vs * LANES; i < n_src; i++) total += src[i];
            for (long i = vd * LANES; i < n_dst; i++) dst[i] = fill;
        }}
    }}
    dc_stream_sink = total;
    return 0;
}}

double dc_stream_seconds(const float *src, long n_src, float *dst, long n_dst, float fill, int threads, long passes) {{
    struct timespec start, end;
    if (passes < 1) return -1.0;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long p = 0; p < passes; p++)
        if (dc_stream(src, n_src, dst, n_dst, fill, threads)) return -1.0;
    clock_gettime(CLOCK_MONOTONIC, &end);
    return (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec);
}}
"""


@dataclass(frozen=True)
class Kernels:
    """The bandwidth loop for one ISA, compiled and loaded."""

    isa: Isa
    path: Path  # the compiled library
    _lib: Any

    def bind(self, src: np.ndarray, dst: np.ndarray, threads: int) -> Callable[[], None]:
        """A call that runs one pass of the loop over `src` (read) and `dst` (written) on `threads` threads.

        Both must be C-contiguous float32 arrays starting on a layout.ALIGN boundary (layout.empty_aligned makes
        them); they are checked here, once, so that the returned call costs one C call and nothing else (the
        pointers it holds keep both arrays alive).
        """
        return self.bind_timed(src, dst, threads)[0]

    def bind_timed(
        self, src: np.ndarray, dst: np.ndarray, threads: int
    ) -> tuple[Callable[[], None], Callable[[int], float]]:
        """bind()'s call, and beside it the same pass timed in C: a call that runs `passes` passes and returns the
        seconds per pass."""
        checks.threads(threads)
        for name, a in (("src", src), ("dst", dst)):
            if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous):
                raise TypeError(f"stream {name} must be a C-contiguous float32 numpy array, got {_describe(a)}")
            if a.size and a.ctypes.data % layout.ALIGN:
                raise ValueError(
                    f"stream {name} must start on a {layout.ALIGN}-byte boundary, got address {a.ctypes.data:#x} "
                    "(allocate it with kernels.layout.empty_aligned)"
                )
        src_p, dst_p = ffi.floats(src, writable=False), ffi.floats(dst, writable=True)
        n_src, n_dst = int(src.size), int(dst.size)
        lib = self._lib

        refused = (
            f"dc_stream refused its arguments (n_src={n_src}, n_dst={n_dst}, threads={threads}): expected lengths "
            ">= 0, threads >= 1 and buffers aligned to one vector"
        )

        def call() -> None:
            if lib.dc_stream(src_p, n_src, dst_p, n_dst, 1.0, threads) != 0:
                raise RuntimeError(refused)

        def timed(passes: int) -> float:
            checks.integer("passes", passes, 1)
            seconds = lib.dc_stream_seconds(src_p, n_src, dst_p, n_dst, 1.0, threads, passes)
            if seconds < 0:
                raise RuntimeError(refused)
            return seconds / passes

        return call, timed


def _describe(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"dtype {a.dtype}, shape {a.shape}, {'' if a.flags.c_contiguous else 'not '}C-contiguous"
    return type(a).__name__


@functools.cache
def load(isa_name: str) -> Kernels:
    """The bandwidth loop for `isa_name`, compiled on first use (cached on disk by kernels.compiler)."""
    isa = get_isa(isa_name)
    path = compiler.build(stream_source(isa), isa.flags, name=f"stream-{isa.name}")
    return Kernels(isa, path, ffi.load(path, SIGNATURES))
