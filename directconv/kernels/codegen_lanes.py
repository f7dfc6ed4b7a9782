"""Generate the C kernel of a layer whose vectors hold several groups: depthwise and narrow-group convolutions.

In a plain kernel every output vector sums over all input channels, one broadcast scalar at a time. When a group has
one input channel (depthwise: groups = C_i, C_o = k * C_i) or fewer channels than a vector has lanes (ResNeXt's
4 per group on 8 lanes), an output vector spans several groups and each lane needs other input channels. Here each
lane multiplies its own input: per tap and per input channel i of a group, the input vectors are shuffled so that
lane l holds input channel group(l) * C_i,g + i (for depthwise with k = 1 that is the input vector itself, no
shuffle), and one multiply-add per accumulator follows. Nothing is padded, nothing is scalar.

Contract (shares the plain kernel's C signature, so runtime, bench and tuner treat both alike):

- Activations are NCHWc as in codegen. Weights are [ceil(C_o/lanes)][kh][kw][C_i,g][lanes]: for output channel
  o = b * lanes + l, element [b][n][m][i][l] is w[o][i][n][m], zero past C_o. Bias is [ceil(C_o/lanes) * lanes].
- Register block: W_o,b output columns x C_o,b output channels (C_o,b / lanes vectors) in accumulator variables.
  All taps are unrolled in the tile, so a row's interior tile loop sees the weight vectors as loop-invariant and
  the compiler keeps them in registers where they fit beside the accumulators.
- Which lanes come from which input vector depends on where group boundaries fall in an output vector: output
  vectors with the same pattern (their "phase") share code; a table gives each vector its phase and its first
  input vector.
- The NCHW entry (dc_conv_nchw) converts each task's blocks in a per-thread scratch, except for depthwise layers whose
  rows are at least a vector wide: those convolve their NCHW planes in place (kernels/codegen_planes.py).
- cib_blocks is ignored (there is no reduction over input channel blocks). Edge tiles, stride, per-side padding
  and dilation are compiled in as in codegen; the kernel allocates nothing; the result does not depend on the
  thread count.
"""

from __future__ import annotations

from dataclasses import dataclass

from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa
from directconv.core.shape import LANE_KINDS, ConvShape, kernel_kind
from directconv.kernels import codegen_planes
from directconv.kernels.codegen import (
    C_FUSED_SIGNATURE,
    C_NCHW_SIGNATURE,
    GENERATOR_VERSION,
    VIEWS_CHECK,
    Tile,
    bench_source,
    c_text,
    conv_wrapper_source,
    nchw_prelude,
    parallel_macros,
    plan_tiles,
    store_tile,
    vector_prelude,
)
from directconv.model.depthwise_nchw import has_plane_entry

# More phases than this would multiply the code by as much: no layer we know comes close (depthwise and ResNeXt have
# one, a channel multiplier of 2 on 8 lanes has two).
MAX_PHASES = 16


@dataclass(frozen=True)
class Gather:
    """How to assemble, for one input channel i of a group, the vector whose lane l is the input channel that output
    lane l reads: source[l] = (input vector offset from the output vector's first input vector, lane)."""

    source: tuple[tuple[int, int], ...]

    @property
    def vectors(self) -> tuple[int, ...]:
        return tuple(sorted({v for v, _ in self.source}))


@dataclass(frozen=True)
class Phase:
    """The gathers of one output vector, one per input channel of a group."""

    gathers: tuple[Gather, ...]


def _phase(shape: ConvShape, lanes: int, block: int) -> tuple[int, Phase]:
    """The first input vector output vector `block` reads, and its gather pattern relative to that vector."""
    first_channel = block * lanes
    base = (first_channel // shape.cog) * shape.cig  # the first input channel of the vector's first group
    base_vector = base // lanes
    gathers = []
    for i in range(shape.cig):
        source = []
        for lane in range(lanes):
            o = first_channel + lane
            # Lanes past C_o compute zeros (weights and bias are zero there): they read what lane 0 reads, which exists.
            channel = (min(o, shape.co - 1) // shape.cog) * shape.cig + i if o < shape.co else base + i
            source.append((channel // lanes - base_vector, channel % lanes))
        gathers.append(Gather(tuple(source)))
    return base_vector, Phase(tuple(gathers))


def plan_phases(shape: ConvShape, lanes: int) -> tuple[list[int], list[Phase], list[int]]:
    """For every output vector: its first input vector, and the index of its phase in the returned phase list."""
    nbo = -(-shape.co // lanes)
    bases, phases, index = [], [], []
    for block in range(nbo):
        base, phase = _phase(shape, lanes, block)
        if phase not in phases:
            phases.append(phase)
        bases.append(base)
        index.append(phases.index(phase))
    if len(phases) > MAX_PHASES:
        raise ValueError(
            f"{shape.describe()}: its groups fall into {len(phases)} different lane patterns on {lanes}-lane vectors "
            f"(at most {MAX_PHASES} are generated)"
        )
    return bases, phases, index


def _gather_expr(gather: Gather, loaded: dict[int, str], lanes: int) -> str:
    """C expression of the gathered vector from the loaded input vectors (named by offset in `loaded`)."""
    vectors = gather.vectors
    if len(vectors) == 1:
        v = vectors[0]
        if all(lane == k for k, (_, lane) in enumerate(gather.source)):
            return loaded[v]
        pattern = ", ".join(str(lane) for _, lane in gather.source)
        return f"__builtin_shufflevector({loaded[v]}, {loaded[v]}, {pattern})"
    # Two vectors at a time: lanes from the newer vector take index lanes + lane, the rest keep what they have.
    expr = loaded[vectors[0]]
    for v in vectors[1:]:
        idx: list[str] = []
        for k, (src, lane) in enumerate(gather.source):
            if src == v:
                idx.append(str(lanes + lane))
            elif src == vectors[0] and expr == loaded[vectors[0]]:
                idx.append(str(lane))
            else:
                idx.append(str(k))
        expr = f"__builtin_shufflevector({expr}, {loaded[v]}, {', '.join(idx)})"
    return expr


def _emit_tile(name: str, shape: ConvShape, cfg: KernelConfig, phases: tuple[Phase, ...], tile: Tile) -> str:
    """One tile: `tile.width` columns x len(phases) output vectors, every tap unrolled, rows guarded at run time."""
    lanes = cfg.lanes
    w, nv = tile.width, len(phases)
    acc = [[f"a{kk}_{v}" for v in range(nv)] for kk in range(w)]
    lines: list[str] = []
    emit = lines.append
    emit(
        f"static inline __attribute__((always_inline)) void {name}(const float *restrict in_b, "
        "const float *restrict wt_j, float *restrict out_r, const float *restrict bias_j, const int *restrict src, "
        "int k0, int ih0, int n_lo, int n_hi, const dc_act *ep, const float *restrict res_r)"
    )
    emit("{")
    emit("    vf " + ", ".join(a for row in acc for a in row) + ";")
    for v in range(nv):
        emit(f"    {{ vf b = VLOAD(bias_j + {v * lanes}); " + " ".join(f"{acc[kk][v]} = b;" for kk in range(w)) + " }")
    for n in range(shape.kh):
        emit(f"    if ({n} >= n_lo && {n} < n_hi) {{")
        emit(f"        const ptrdiff_t ro = ((ptrdiff_t)(ih0 + {n * shape.dh}) * W + (ptrdiff_t)k0 * SW - PL) * CB;")
        for v, phase in enumerate(phases):
            emit("        {")
            emit(f"            const float *restrict iv = in_b + (ptrdiff_t)src[{v}] * PLANE_IN + ro;")
            emit(f"            const float *restrict wv = wt_j + (size_t){v} * KH * KW * CIG * CB;")
            # Every input pixel the tile reads at this tap row, with the (column, tap) pairs that read it.
            readers: dict[int, list[tuple[int, int]]] = {}
            for kk in range(w):
                for m in range(shape.kw):
                    if tile.mask is None or tile.mask[kk][m]:
                        readers.setdefault(kk * shape.sw + m * shape.dw, []).append((kk, m))
            offsets = sorted({off for g in phase.gathers for off in g.vectors})
            for pixel, pairs in sorted(readers.items()):
                loaded = {off: f"x{off}" for off in offsets}
                emit("            {")
                for off in offsets:
                    emit(
                        f"                const vf x{off} = VLOAD(iv + (ptrdiff_t){off} * PLANE_IN + {pixel * lanes});"
                    )
                for i, gather in enumerate(phase.gathers):
                    emit(f"                {{ const vf g = {_gather_expr(gather, loaded, lanes)};")
                    for kk, m in pairs:
                        widx = ((n * shape.kw + m) * shape.cig + i) * lanes
                        emit(f"                  {acc[kk][v]} += VLOAD(wv + {widx}) * g;")
                    emit("                }")
                emit("            }")
            emit("        }")
        emit("    }")
    lines.extend(store_tile(acc, "1"))
    emit("}")
    return "\n".join(lines)


def _emit_row(name: str, tile_names: list[str], tiles: list[Tile], wob: int) -> str:
    body = [
        f"static void {name}(const float *restrict in_b, const float *restrict wt_j, float *restrict out_r, "
        "const float *restrict bias_j, const int *restrict src, int oh, const dc_act *ep, const float *restrict res_r)",
        "{",
        "    const int ih0 = oh * SH - PT;",
        "    const int n_lo = ih0 < 0 ? (-ih0 + DH - 1) / DH : 0;  /* taps n with 0 <= ih0 + n * DH < H */",
        "    const int n_hi = ih0 >= H ? 0 : (H - ih0 + DH - 1) / DH < KH ? (H - ih0 + DH - 1) / DH : KH;",
    ]
    for tile_name, tile in zip(tile_names, tiles, strict=True):
        args = "in_b, wt_j, out_r, bias_j, src"
        if tile.count == 1:
            body.append(f"    {tile_name}({args}, {tile.first * wob}, ih0, n_lo, n_hi, ep, res_r);")
        else:
            body.append(f"    for (int t = {tile.first}; t < {tile.first + tile.count}; ++t)")
            body.append(f"        {tile_name}({args}, t * {wob}, ih0, n_lo, n_hi, ep, res_r);")
    body.append("}")
    return "\n".join(body)


def generate(cfg: KernelConfig, shape: ConvShape, *, pin: bool = True) -> str:
    """The complete C source of the depthwise or grouped-packed kernel for `cfg` on `shape`."""
    shape = shape.kernel_view()
    isa = get_isa(cfg.isa)
    lanes = isa.lanes
    kind = kernel_kind(shape, lanes)
    if kind not in LANE_KINDS:
        raise ValueError(f"codegen_lanes runs depthwise and grouped-packed layers; {shape.describe()} is {kind}")
    nbo = -(-shape.co // lanes)
    vecs = cfg.vectors
    nj = -(-nbo // vecs)
    bases, phases, phase_of = plan_phases(shape, lanes)
    tiles = plan_tiles(shape, cfg.wob)

    # One row function per distinct register block: the phases of its output vectors (the last may be narrower).
    variants: list[tuple[int, ...]] = []
    variant_of = []
    for j in range(nj):
        key = tuple(phase_of[b] for b in range(j * vecs, min(nbo, (j + 1) * vecs)))
        if key not in variants:
            variants.append(key)
        variant_of.append(variants.index(key))

    out: list[str] = [
        f"/* directconv generated {kind} kernel, generator v{GENERATOR_VERSION}\n"
        f" * register block: isa={cfg.isa} cob={cfg.cob} wob={cfg.wob}\n"
        f" * layer: {shape.describe()}; {len(phases)} lane pattern(s), {len(variants)} block variant(s)\n */",
        "#include <stddef.h>\n#include <time.h>",
        vector_prelude(lanes, isa.register_constraint if pin else None, aarch64=isa.name == "neon"),
        c_text("dc_epilogue.h"),
    ]
    consts = dict(
        CB=lanes, H=shape.h, W=shape.w, KH=shape.kh, KW=shape.kw, SH=shape.sh, SW=shape.sw, DH=shape.dh,
        DW=shape.dw, PT=shape.pt, PL=shape.pl, HO=shape.ho, WO=shape.wo, NBI=-(-shape.ci // lanes), NBO=nbo,
        NJ=nj, VEC=vecs, CIG=shape.cig,
    )  # fmt: skip
    out.extend(f"#define {k} {v}" for k, v in consts.items())
    out.append("#define PLANE ((ptrdiff_t)HO * WO * CB)  /* distance between two output channel blocks */")
    out.append("#define PLANE_IN ((ptrdiff_t)H * W * CB)  /* distance between two input channel blocks */")
    out.append(parallel_macros(shape))
    out.append("#define IN_BLOCKS NBI  /* input and output channel blocks of one image */")
    out.append("#define OUT_BLOCKS NBO")
    out.append(f"static const int SRC[{nbo}] = {{{', '.join(map(str, bases))}}};  /* first input vector per output */")
    out.append(f"static const int VARIANT[{nj}] = {{{', '.join(map(str, variant_of))}}};")

    for vi, key in enumerate(variants):
        names = []
        for t_index, tile in enumerate(tiles):
            name = f"tile_{vi}_{t_index}"
            names.append(name)
            out.append(_emit_tile(name, shape, cfg, tuple(phases[p] for p in key), tile))
        out.append(_emit_row(f"row_{vi}", names, tiles, cfg.wob))

    dispatch = "\n".join(
        f"                case {vi}: row_{vi}(in_b, wt_j, out_r, bias_j, src, oh, &ep, res_r); break;"
        for vi in range(len(variants))
    )
    out.append(
        f"""
/* Returns 0, or a negative code for an argument out of range (the Python wrapper checks first). Tasks are handed
 * out one at a time (dynamic schedule), as in the plain kernel; each output element is computed by one task. */
{C_FUSED_SIGNATURE[:-1]}
{{
    (void)cib_blocks;
    if (batch < 1 || rows < 1 || threads < 1) return -1;
    {VIEWS_CHECK}
    const dc_act ep = {{act, alpha, beta}};
    if (rows > HO) rows = HO;
    const long row_tasks = (HO + rows - 1) / rows;
    const long tasks = (long)batch * NJ * row_tasks;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if(threads > 1 && PARALLEL(batch))
    for (long t = 0; t < tasks; ++t) {{
        long b, j, rt;
        if (parallel_rows) {{ j = t % NJ; rt = (t / NJ) % row_tasks; b = t / (NJ * row_tasks); }}
        else {{ rt = t % row_tasks; j = (t / row_tasks) % NJ; b = t / (NJ * row_tasks); }}
        const float *in_b = in + ((size_t)b * in_blocks + (size_t)in_first) * H * W * CB;
        const float *wt_j = wt + (size_t)j * VEC * KH * KW * CIG * CB;
        const float *bias_j = bias + (size_t)j * VEC * CB;
        const int *src = SRC + j * VEC;
        float *out_j = out + ((size_t)b * out_blocks + (size_t)out_first + (size_t)j * VEC) * HO * WO * CB;
        const float *res_j =
            residual ? residual + ((size_t)b * res_blocks + (size_t)res_first + (size_t)j * VEC) * HO * WO * CB : 0;
        const int r0 = (int)(rt * rows), r1 = r0 + rows < HO ? r0 + rows : HO;
        for (int oh = r0; oh < r1; ++oh) {{
            float *out_r = out_j + (size_t)oh * WO * CB;
            const float *res_r = res_j ? res_j + (size_t)oh * WO * CB : 0;
            switch (VARIANT[j]) {{
{dispatch}
            }}
        }}
    }}
    return 0;
}}
"""
    )
    out.append(conv_wrapper_source())
    if has_plane_entry(shape, isa):
        out.append(codegen_planes.planes_nchw_source(shape, cfg))
    else:
        out.append(_nchw_source(shape, cfg, dispatch))
    out.append(bench_source())
    return "\n\n".join(out) + "\n"


def _task_inputs(shape: ConvShape, lanes: int, vecs: int) -> list[tuple[int, int]]:
    """Per register block j: the first input channel block its output vectors read, and how many."""
    nbo = -(-shape.co // lanes)
    bases, phases, phase_of = plan_phases(shape, lanes)
    out = []
    for j in range(-(-nbo // vecs)):
        first, last = None, 0
        for b in range(j * vecs, min(nbo, (j + 1) * vecs)):
            reach = max(off for g in phases[phase_of[b]].gathers for off in g.vectors)
            first = bases[b] if first is None else min(first, bases[b])
            last = max(last, bases[b] + reach)
        assert first is not None
        out.append((first, last - first + 1))
    return out


def nchw_scratch_floats(shape: ConvShape, cfg: KernelConfig) -> int:
    """Floats of scratch dc_conv_nchw needs per thread: the input blocks of one task and its output blocks (none
    where the planes are convolved in place, kernels/codegen_planes.py)."""
    if has_plane_entry(shape, get_isa(cfg.isa)):
        return 0
    view = shape.kernel_view()
    most = max(count for _, count in _task_inputs(view, cfg.lanes, cfg.vectors))
    return (most * view.h * view.w + cfg.vectors * view.ho * view.wo) * cfg.lanes


def _nchw_source(shape: ConvShape, cfg: KernelConfig, dispatch: str) -> str:
    lanes, vecs = cfg.lanes, cfg.vectors
    tasks = _task_inputs(shape, lanes, vecs)
    first = ", ".join(str(f) for f, _ in tasks)
    count = ", ".join(str(c) for _, c in tasks)
    return (
        nchw_prelude(shape, nchw_scratch_floats(shape, cfg))
        + f"""static const int TASK_FIRST[NJ] = {{{first}}};  /* first input channel block a register block reads */
static const int TASK_COUNT[NJ] = {{{count}}};

{C_NCHW_SIGNATURE[:-1]}
{{
    (void)cib_blocks;
    if (batch < 1 || threads < 1) return -1;
    const long tasks = (long)batch * NJ;
    const dc_act ep = {{relu ? DC_ACT_RELU : DC_ACT_NONE, 0.0f, 0.0f}};
    const float *res_r = 0;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if(threads > 1 && PARALLEL(batch))
    for (long t = 0; t < tasks; ++t) {{
        const long b = t / NJ, j = t % NJ;
        float *in_b = scratch + (size_t)DC_THREAD * SCRATCH;  /* this task's input blocks, from TASK_FIRST[j] on */
        float *out_j = in_b + (size_t)TASK_COUNT[j] * H * W * CB;
        for (int k = 0; k < TASK_COUNT[j]; ++k) {{
            const int cb = TASK_FIRST[j] + k, real = CI - cb * CB < CB ? CI - cb * CB : CB;
            dc_planes_to_block(x + ((size_t)b * CI + (size_t)cb * CB) * H * W, in_b + (size_t)k * H * W * CB,
                               (long)H * W, 0, (long)H * W, real);
        }}
        int src[VEC];  /* each output vector's first input block, counted from the scratch's first */
        for (int v = 0; v < VEC && j * VEC + v < NBO; ++v) src[v] = SRC[j * VEC + v] - TASK_FIRST[j];
        const float *wt_j = wt + (size_t)j * VEC * KH * KW * CIG * CB;
        const float *bias_j = bias + (size_t)j * VEC * CB;
        for (int oh = 0; oh < HO; ++oh) {{
            float *out_r = out_j + (size_t)oh * WO * CB;
            switch (VARIANT[j]) {{
{dispatch}
            }}
        }}
        for (int v = 0; v < VEC && j * VEC + v < NBO; ++v) {{
            const int ob = (int)j * VEC + v, real = CO - ob * CB < CB ? CO - ob * CB : CB;
            dc_block_to_planes(out_j + (size_t)v * HO * WO * CB, y + ((size_t)b * CO + (size_t)ob * CB) * HO * WO,
                               (long)HO * WO, 0, (long)HO * WO, real);
        }}
    }}
    return 0;
}}
"""
    )
