"""A first rule for picking a kernel configuration without measuring anything.

It follows the paper's register-blocking argument with the constants of a typical modern core assumed rather than
read from a machine description: two FMA pipes of latency four, two vector loads per cycle. Among the register
blocks that fit the ISA's registers (accumulators + one weight vector per C_o,b/lanes + one broadcast input), it
picks the one with the fewest estimated cycles over the whole layer, counting the partial channel block and the
partial column tile, which a rule looking at one tile would miss.
"""

from __future__ import annotations

from directconv.kernels.config import KernelConfig
from directconv.kernels.isa import get_isa, host_isa
from directconv.kernels.shape import ConvShape

ASSUMED_FMA_PIPES = 2
ASSUMED_FMA_LATENCY = 4
ASSUMED_LOADS_PER_CYCLE = 2
# Input channels per cache block: small enough that the weights of one block stay near the core while a whole
# row range streams past them, large enough that reloading the output tile per block costs nothing.
DEFAULT_CIB_CHANNELS = 64
MAX_VECTORS = 4
# Accumulators wanted beyond the latency bound N_fma * L_fma = 8: with exactly 8, any load that misses L1 stalls
# the FMA pipes; measured register tiles of 12 accumulators beat 8 on both AVX2 and AVX-512.
TARGET_ACCUMULATORS = 12


def tile_cycles(vectors: int, width: int) -> float:
    """Estimated cycles of one (input channel, tap) step of a vectors x width register tile."""
    fmas = vectors * width
    return max(
        fmas / ASSUMED_FMA_PIPES,  # FMA throughput
        ASSUMED_FMA_LATENCY,  # each accumulator waits for its previous FMA
        (vectors + width) / ASSUMED_LOADS_PER_CYCLE,  # weight loads + input broadcasts
    )


def layer_cycles(shape: ConvShape, lanes: int, vectors: int, width: int) -> float:
    """Estimated cycles per (input channel, tap) step summed over one output row of every channel block."""
    blocks_out = -(-shape.co // lanes)
    full_j, tail_v = divmod(blocks_out, vectors)
    full_t, tail_w = divmod(shape.wo, width)

    def row(v: int) -> float:
        return full_t * tile_cycles(v, width) + (tile_cycles(v, tail_w) if tail_w else 0.0)

    return full_j * row(vectors) + (row(tail_v) if tail_v else 0.0)


def default_config(shape: ConvShape, *, isa: str | None = None, threads: int = 1) -> KernelConfig:
    """A sound configuration for `shape` on `isa` (default: the best ISA of this host)."""
    isa_name = isa or host_isa()
    arch = get_isa(isa_name)
    lanes = arch.lanes
    blocks_out = -(-shape.co // lanes)
    candidates = []
    for vectors in range(1, min(MAX_VECTORS, blocks_out) + 1):
        for width in range(1, shape.wo + 1):
            accumulators = vectors * width
            if accumulators + vectors + 1 > arch.registers:
                break
            cost = layer_cycles(shape, lanes, vectors, width)
            # Among equal estimates: enough accumulators for slack, then more vectors (each broadcast input
            # feeds more multiply-adds), then fewer registers.
            key = (cost, accumulators < TARGET_ACCUMULATORS, -vectors, accumulators)
            candidates.append((key, vectors, width))
    _, vectors, width = min(candidates)  # vectors=1, width=1 always fits
    cib = DEFAULT_CIB_CHANNELS if shape.ci > DEFAULT_CIB_CHANNELS and DEFAULT_CIB_CHANNELS % lanes == 0 else None
    nj = -(-blocks_out // vectors)
    # Split output-channel blocks between threads when they divide evenly (each thread then reads only its own
    # weights); otherwise split rows one at a time, which balances any height.
    if threads == 1 or nj % threads == 0:
        parallel, rows = "co", None
    else:
        parallel, rows = "rows", 1
    return KernelConfig(
        isa=isa_name, cob=vectors * lanes, wob=width, cib=cib, rows=rows, parallel=parallel, threads=threads
    )
