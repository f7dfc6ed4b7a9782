"""Generate the C source of one direct-convolution kernel, specialized to a KernelConfig and a ConvShape.

Contract of the generated code (the "micro-kernel" in BLIS terms):

- Layouts. Activations are NCHWc with c = the ISA's vector width ("lanes"): [N][ceil(C/c)][H][W][c], channels past
  C zero. Weights are packed for one C_o,b: [ceil(C_o/C_o,b)][ceil(C_i/c)][kh][kw][c][C_o,b], zero past C_o and
  C_i; bias is [ceil(C_o/C_o,b) * C_o,b], zero past C_o. An output block of C_o,b channels is C_o,b/c consecutive
  activation blocks, so a layer's output is the next layer's input whatever C_o,b either layer uses.
- Register block. A tile is W_o,b output columns x C_o,b output channels held in cob/lanes * wob accumulator
  variables (named scalars-like locals, never an array: GCC keeps an array of vectors on the stack).
  The accumulators are loaded (or set to the bias) once, run through every tap and input channel of a cache block,
  and stored once.
- Edge tiles are compiled, not looped: the layer's width, stride and padding are constants, so the generator knows
  which (column, tap) pairs fall into the zero padding of each tile and leaves those multiply-adds out. The last
  partial tile of a row and the last partial channel block (C_o not a multiple of C_o,b) have their own code.
  Input-channel tails (C_i not a multiple of c) run only over the real channels.
- Padding along the height is a run-time range of taps per output row: no padded copy of the input exists.
- The kernel allocates nothing. Each output element is produced by exactly one task, in a fixed order, so the
  result does not depend on the thread count.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa
from directconv.core.shape import BROADCAST_KINDS, ConvShape, input_windows, kernel_kind, reads_nchw

GENERATOR_VERSION = 3

C_SIGNATURE = (
    "int dc_conv(const float *in, const float *wt, const float *bias, float *out, "
    "int batch, int cib_blocks, int rows, int parallel_rows, int threads, int relu);"
)
# Timing lives in C so that no interpreter overhead lands between runs: `warmup` untimed calls, then timed calls
# until `min_seconds` have passed and at least `min_samples` were taken (at most `max_samples`). Per-call seconds
# go to `samples`; returns how many were taken, or a negative kernel error code.
# The fused form of dc_conv that graphs call: views into larger buffers and an epilogue. The input is channel
# blocks [in_first, in_first + the layer's) of a tensor of in_blocks blocks per image; the output goes to blocks
# [out_first, ...) of one of out_blocks (a Concat's producers write their slices in place); `residual`, NULL or a
# tensor of res_blocks blocks per image read from res_first on, is added to the finished output, then the
# activation `act` (kernels/c/dc_epilogue.h) with its alpha and beta. dc_conv is this with plain views and ReLU or
# nothing. `residual` must not overlap `out`.
C_FUSED_SIGNATURE = (
    "int dc_conv_fused(const float *in, const float *wt, const float *bias, float *out, const float *residual, "
    "int batch, int cib_blocks, int rows, int parallel_rows, int threads, int in_blocks, int in_first, "
    "int out_blocks, int out_first, int res_blocks, int res_first, int act, float alpha, float beta);"
)
# dc_conv_fused_x: dc_conv_fused reading its input from NCHW instead of blocks, for layers with one input channel
# block (C_i <= lanes, groups 1: a network's first layer, 3 channels of an image), as onnxruntime's NCHWc kernels
# do: the network's input then needs no conversion, and the kernel reads C_i planes instead of blocks padded to
# the lanes. in_blocks and in_first count channels here (the input has in_blocks channels per image, the layer's
# are [in_first, in_first + C_i)); everything else is dc_conv_fused's.
C_FUSED_X_SIGNATURE = C_FUSED_SIGNATURE.replace("dc_conv_fused(", "dc_conv_fused_x(")
C_BENCH_SIGNATURE = (
    "int dc_bench(const float *in, const float *wt, const float *bias, float *out, "
    "int batch, int cib_blocks, int rows, int parallel_rows, int threads, "
    "int warmup, double min_seconds, int min_samples, int max_samples, double *samples);"
)


# A layer with fewer multiply-adds per call than this runs on one thread whatever it is given: waking a second
# thread costs microseconds, and on a shared host a descheduled thread holds the whole layer up (a 2-convolution
# model on small maps ran slower on 2 threads than on 1: docs/design.md). About 10 us of one core's work.
MIN_PARALLEL_MACS = 1 << 18


def parallel_macros(shape: ConvShape) -> str:
    """WORK: the layer's multiply-adds per image; PARALLEL(batch): whether a call is worth a team of threads."""
    macs = shape.ho * shape.wo * shape.co * shape.cig * shape.kh * shape.kw
    return (
        f"#define WORK ((long){macs})  /* multiply-adds per image */\n"
        f"#define PARALLEL(batch) ((long)(batch) * WORK >= {MIN_PARALLEL_MACS}L)"
    )


def c_text(name: str) -> str:
    """A C file of kernels/c/ (shared pieces of generated and fixed C)."""
    return (resources.files(__package__) / "c" / name).read_text()


# NCHW in, NCHW out in one pass, for the kinds whose register blocks read only some input blocks (grouped here,
# depthwise and grouped-packed in codegen_lanes): each task converts the input channel blocks it reads into a
# per-thread scratch, runs its rows there and transposes its output blocks back, so a memory-bound layer moves
# its tensors through the cache once instead of three times (to_blocked, kernel, from_blocked). `scratch` holds
# `threads` times the scratch of one thread (runtime.CompiledKernel.scratch_floats); the kernel allocates nothing.
# Two kinds of layer have an entry of this signature that converts nothing and ignores `scratch`: plain 1x1 layers
# on large planes (codegen_pointwise) and depthwise layers whose rows are a vector wide (codegen_planes).
C_NCHW_SIGNATURE = (
    "int dc_conv_nchw(const float *x, const float *wt, const float *bias, float *y, int batch, int cib_blocks, "
    "int threads, int relu, float *scratch);"
)


@dataclass(frozen=True)
class Tile:
    """A run of output-column tiles that share one piece of code."""

    first: int  # index of the first tile (its first column is first * wob)
    count: int  # consecutive tiles of this kind (more than one only for interior tiles)
    width: int  # output columns
    mask: tuple[tuple[bool, ...], ...] | None  # mask[kk][m]: column kk reads real input at tap m; None = all real


def plan_tiles(shape: ConvShape, wob: int) -> list[Tile]:
    """Split one output row into tiles; group the interior ones (no padding touched) into a loop.

    The remainder of W_o / W_o,b is one narrow last tile: joining it to the last full tile or sharing the columns
    evenly measured no faster (docs/design.md).
    """
    tiles: list[Tile] = []
    n_full, rem = divmod(shape.wo, wob)
    starts = [(i, wob) for i in range(n_full)] + ([(n_full, rem)] if rem else [])
    for index, width in starts:
        k0 = index * wob
        mask = tuple(
            tuple(0 <= (k0 + kk) * shape.sw + m * shape.dw - shape.pl < shape.w for m in range(shape.kw))
            for kk in range(width)
        )
        interior = width == wob and all(all(row) for row in mask)
        if interior and tiles and tiles[-1].mask is None and tiles[-1].first + tiles[-1].count == index:
            prev = tiles[-1]
            tiles[-1] = Tile(prev.first, prev.count + 1, wob, None)
        else:
            tiles.append(Tile(index, 1, width, None if interior else mask))
    return tiles


# GCC's scheduler before register allocation (on by default for AArch64, off for x86) hoists the input loads of a
# whole tile ahead of its multiply-adds and spills accumulators of tiles that fit the 32 registers (NEON 8x14 on a
# 3x3 layer: 31 stack accesses per hot loop with it, none without). A pragma rather than a flag, so that the C
# keeps it wherever it is compiled (exported kernels too); guarded, because clang does not know the pragma.
_AARCH64_NO_PRESCHEDULE = """#if defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-schedule-insns")
#endif"""


def vector_prelude(lanes: int, pin_constraint: str | None, aarch64: bool = False) -> str:
    # PIN keeps a loaded weight vector in a register: otherwise GCC folds the load into every multiply-add that
    # uses it (x86 memory operands), reading each weight vector W_o,b times per step instead of once.
    pin = f'#define PIN(v) __asm__("" : "+{pin_constraint}"(v))' if pin_constraint else "#define PIN(v) ((void)0)"
    return (
        (_AARCH64_NO_PRESCHEDULE if aarch64 else "")
        + f"""
typedef float vf __attribute__((vector_size({4 * lanes})));
typedef float vfu __attribute__((vector_size({4 * lanes}), aligned(4)));  /* unaligned access */
typedef int vi __attribute__((vector_size({4 * lanes})));
#define VLOAD(p) (*(const vfu *)(p))
#define VSTORE(p, v) (*(vfu *)(p) = (v))
#define VRELU(v) ((vf)((vi)(v) & (vi)((v) > (vf){{0}})))
{pin}
"""
    )


def _emit_tile(
    name: str,
    shape: ConvShape,
    cfg: KernelConfig,
    vecs: int,
    tile: Tile,
    ci_tail: int,
    nbi: int,
    nchw: bool = False,
    windowed: bool = False,
) -> str:
    """One tile's function; `nchw`: reading the input from C_i planes (one block's channels, dc_conv_fused_x);
    `windowed`: a grouped-window kernel's, whose weights start at the window's first block."""
    lanes = cfg.lanes
    # Blocked input: a pixel's channels are adjacent and pixels CB floats apart. NCHW: pixels adjacent, channels
    # a plane apart.
    pixel, channel = (1, " * ((ptrdiff_t)H * W)") if nchw else (lanes, "")
    w = tile.width
    acc = [[f"a{kk}_{v}" for v in range(vecs)] for kk in range(w)]
    lines: list[str] = []
    emit = lines.append
    emit(
        f"static void {name}(const float *restrict in_b, const float *restrict wt_j, float *restrict out_r, "
        f"const float *restrict bias_j, int k0, int ih0, int n_lo, int n_hi, int ib0, int ib1,{IW_PARAM[windowed]} int init, "
        f"const dc_act *ep, const float *restrict res_r)"
    )
    emit("{")
    emit("    vf " + ", ".join(a for row in acc for a in row) + ";")
    emit("    if (init) {")
    for v in range(vecs):
        emit(f"        vf b{v} = VLOAD(bias_j + {v * lanes});")
    for kk in range(w):
        emit("        " + " ".join(f"{acc[kk][v]} = b{v};" for v in range(vecs)))
    emit("    } else {")
    for kk in range(w):
        emit(
            "        "
            + " ".join(f"{acc[kk][v]} = VLOAD(out_r + PLANE * {v} + (ptrdiff_t)(k0 + {kk}) * CB);" for v in range(vecs))
        )
    emit("    }")

    def channel_loop(bound: str) -> None:
        # One channel loop per tap m, not one tap loop inside a channel loop: with stride 1, column kk at tap m+1
        # reads the input that column kk+1 read at tap m, and GCC keeps such broadcasts live across taps, which
        # spills accumulators. Separate loops give each tap a fresh, short live range.
        for m in range(shape.kw):
            live = [kk for kk in range(w) if tile.mask is None or tile.mask[kk][m]]
            if not live:
                continue
            emit(f'            _Pragma("GCC unroll {cfg.unroll}") for (int ii = 0; ii < {bound}; ++ii) {{')
            for v in range(vecs):
                emit(f"                vf w{v} = VLOAD(wr + ({m} * CB + ii) * COB + {v * lanes}); PIN(w{v});")
            for kk in live:
                off = (kk * shape.sw + m * shape.dw) * pixel
                emit(f"                {{ float x = in_b[ro + {off} + ii{channel}];")
                emit("                  " + " ".join(f"{acc[kk][v]} += w{v} * x;" for v in range(vecs)) + " }")
            emit("            }")

    def block_body(bound: str) -> None:
        emit("        for (int n = n_lo; n < n_hi; ++n) {")
        # (With NCHW input there is one block: ib is 0.)
        emit(
            "            const ptrdiff_t ro = (((ptrdiff_t)ib * H + ih0 + n * DH) * W + (ptrdiff_t)k0 * SW - PL)"
            + (";" if nchw else " * CB;")
        )
        # A grouped-window register block's weights start at its window's first input block iw. Only its functions
        # take iw: one more argument changed GCC's register allocation of other kernels' tiles (a spill).
        first = "(ib - iw)" if windowed else "ib"
        emit(f"            const float *restrict wr = wt_j + ((size_t){first} * KH + n) * KW * CB * COB;")
        channel_loop(bound)
        emit("        }")

    full_blocks = nbi if ci_tail == lanes else nbi - 1
    emit(f"    const int ibf = ib1 < {full_blocks} ? ib1 : {full_blocks};")
    emit("    for (int ib = ib0; ib < ibf; ++ib) {")
    block_body("CB")
    emit("    }")
    if full_blocks != nbi:
        emit(f"    if (ib1 == {nbi}) {{")
        emit(f"        const int ib = {nbi - 1};")
        block_body(str(ci_tail))
        emit("    }")
    lines.extend(store_tile(acc, "ep"))
    emit("}")
    return "\n".join(lines)


def relu_lines(acc: list[list[str]], flag: str) -> list[str]:
    """C lines that apply ReLU to every accumulator variable when the C expression `flag` is true (the NCHW entries'
    fused ReLU)."""
    return [f"    if ({flag}) {{", *("        " + " ".join(f"{a} = VRELU({a});" for a in row) for row in acc), "    }"]


def store_tile(acc: list[list[str]], final: str) -> list[str]:
    """The end of a tile: one store of each accumulator `acc[column][vector]` into the output row (PLANE apart per
    vector, CB floats per column). When `final` (the epilogue `ep`, NULL before the last cache block) is set, ReLU
    and Clip (ReLU6) without a residual, and a residual followed by ReLU or nothing (ResNet's shortcut), are applied
    on the accumulators before the store; other activations, and a residual before them, after it by dc_finish
    (kernels/c/dc_epilogue.h), a function of its own, over the tile just stored and still in L1. Inlined here, the
    other activations changed GCC's register allocation of the whole tile and spilled accumulators in the hot loop
    (tests/test_isas.py); in a function of its own, a clip slowed the small depthwise tiles of MobileNetV2
    (docs/design.md, "The epilogue stays out of the hot loop"); a residual added there cost a reload of the tile
    (docs/design.md, "The shortcut is added in registers")."""
    at = "PLANE * {v} + (ptrdiff_t)(k0 + {kk}) * CB"
    lines = [f"    if ({final} && ep->act == DC_ACT_RELU && !res_r) {{"]
    lines += ["        " + " ".join(f"{a} = VRELU({a});" for a in row) for row in acc]
    lines += [f"    }} else if ({final} && ep->act == DC_ACT_CLIP && !res_r) {{"]
    lines += ["        const vf lo = (vf){0} + ep->alpha, hi = (vf){0} + ep->beta;"]
    lines += ["        " + " ".join(f"{a} = VMIN(VMAX({a}, lo), hi);" for a in row) for row in acc]
    lines += [f"    }} else if ({final} && res_r && (ep->act == DC_ACT_RELU || ep->act == DC_ACT_NONE)) {{"]
    lines += [
        "        " + " ".join(f"{a} += VLOAD(res_r + {at.format(v=v, kk=kk)});" for v, a in enumerate(row))
        for kk, row in enumerate(acc)
    ]
    lines += ["        if (ep->act == DC_ACT_RELU) {"]
    lines += ["            " + " ".join(f"{a} = VRELU({a});" for a in row) for row in acc]
    lines += ["        }"]
    lines.append("    }")
    lines += [
        "    " + " ".join(f"VSTORE(out_r + {at.format(v=v, kk=kk)}, {a});" for v, a in enumerate(row))
        for kk, row in enumerate(acc)
    ]
    # What the store left to do: another activation, after the residual if there is one.
    lines.append(
        f"    if ({final} && ep->act != DC_ACT_NONE && ep->act != DC_ACT_RELU && (res_r || ep->act != DC_ACT_CLIP))"
    )
    lines.append(
        f"        dc_finish(out_r + (ptrdiff_t)k0 * CB, res_r ? res_r + (ptrdiff_t)k0 * CB : 0, {len(acc)}, "
        f"{len(acc[0])}, PLANE, ep);"
    )
    return lines


def generate(cfg: KernelConfig, shape: ConvShape, *, pin: bool = True) -> str:
    """The complete C source of the kernel for `cfg` on `shape` (see the module docstring for its contract).

    pin=False leaves out the register pins, whose asm constraint names the ISA's registers: the same vector code
    then compiles for another ISA's flags (a 16-lane AVX-512 kernel as pairs of AVX2 vectors), which is how
    kernels.selftest runs an ISA the host lacks.
    """
    shape = shape.kernel_view()
    isa = get_isa(cfg.isa)
    lanes = isa.lanes
    kind = kernel_kind(shape, lanes)
    if kind not in BROADCAST_KINDS:
        raise ValueError(f"codegen.generate runs {', '.join(BROADCAST_KINDS)} layers; {shape.describe()} is {kind}")
    # A grouped layer is `groups` plain convolutions side by side: every count below is per group. A grouped-window
    # layer is one convolution whose register blocks reduce over windows of its input blocks: counts of the layer.
    groups = shape.groups if kind == "grouped" else 1
    nbi = -(-shape.ci // groups // lanes)
    ci_tail = shape.ci // groups - (nbi - 1) * lanes
    nbo = -(-shape.co // groups // lanes)
    vecs = cfg.vectors
    nj = -(-nbo // vecs)
    v_tail = nbo - (nj - 1) * vecs
    tiles = plan_tiles(shape, cfg.wob)

    out: list[str] = []
    out.append(
        f"/* directconv generated kernel, generator v{GENERATOR_VERSION}\n"
        f" * register block: isa={cfg.isa} cob={cfg.cob} wob={cfg.wob} unroll={cfg.unroll}\n"
        f" * layer: {shape.describe()}\n */"
    )
    out.append("#include <stddef.h>\n#include <time.h>")
    out.append(vector_prelude(lanes, isa.register_constraint if pin else None, aarch64=isa.name == "neon"))
    out.append(c_text("dc_epilogue.h"))
    consts = dict(
        CB=lanes,
        COB=cfg.cob,
        H=shape.h,
        W=shape.w,
        KH=shape.kh,
        KW=shape.kw,
        SH=shape.sh,
        SW=shape.sw,
        DH=shape.dh,
        DW=shape.dw,
        PT=shape.pt,
        PL=shape.pl,
        HO=shape.ho,
        WO=shape.wo,
        NBI=nbi,
        NBO=nbo,
        NJ=nj,
        G=groups,
        VEC=vecs,
        NT=tiles[-1].first + tiles[-1].count,  # register tiles per output row
    )
    out.extend(f"#define {k} {v}" for k, v in consts.items())
    out.append("#define PLANE ((ptrdiff_t)HO * WO * CB)  /* distance between two output channel blocks */")
    out.append(parallel_macros(shape))
    out.append("#define IN_BLOCKS (G * NBI)  /* input and output channel blocks of one image */")
    out.append("#define OUT_BLOCKS (G * NBO)")
    out.append(_window_source(shape, cfg) if kind == "grouped-window" else _WHOLE_WINDOWS)  # WLO, WHI, WOFF

    variants = [vecs] + ([v_tail] if v_tail != vecs else [])
    nchw = reads_nchw(shape, lanes)
    if nchw:
        out.append(f"#define CI_X {shape.ci}  /* channels the NCHW entry reads */")
    windowed = kind == "grouped-window"
    for prefix in ("", "x") if nchw else ("",):
        for nv in variants:
            out.extend(_row_source(f"{prefix}v{nv}", shape, cfg, nv, tiles, ci_tail, nbi, prefix == "x", windowed))
    # The last output-channel block runs the narrower row function when C_o leaves a tail of vectors.
    out.append(_driver(C_FUSED_SIGNATURE, "in_b", vecs, v_tail, "v", VIEWS_CHECK, windowed))
    if nchw:
        out.append(_driver(C_FUSED_X_SIGNATURE, "in_x", vecs, v_tail, "xv", VIEWS_CHECK_X, windowed))
    out.append(conv_wrapper_source())
    if kind == "grouped":
        out.append(_grouped_nchw_source(shape, cfg, _tail_call("v", v_tail, vecs), vecs))
    out.append(bench_source())
    return "\n\n".join(out) + "\n"


# Register block j's input blocks [WLO(j), WHI(j)) and where its weights start (floats): all input blocks of its group.
_WHOLE_WINDOWS = """#define WLO(j) 0
#define WHI(j) NBI
#define WOFF(j) ((size_t)(j) * NBI * KH * KW * CB * COB)"""


def _window_source(shape: ConvShape, cfg: KernelConfig) -> str:
    """WLO, WHI and WOFF of a grouped-window kernel: its register blocks' input windows (core.shape.input_windows)
    and where their weights start, packed one window after the other (kernels/layout.py)."""
    windows = input_windows(shape, cfg.lanes, cfg.vectors)
    per_block = shape.kh * shape.kw * cfg.lanes * cfg.cob
    offsets = [0]
    for first, end in windows[:-1]:
        offsets.append(offsets[-1] + (end - first) * per_block)

    def table(name: str, ctype: str, values: list[int]) -> str:
        return f"static const {ctype} {name}[NJ] = {{{', '.join(map(str, values))}}};"

    return "\n".join(
        [
            table("dc_wlo", "int", [first for first, _ in windows]),
            table("dc_whi", "int", [end for _, end in windows]),
            table("dc_woff", "size_t", offsets),
            "#define WLO(j) dc_wlo[j]\n#define WHI(j) dc_whi[j]\n#define WOFF(j) dc_woff[j]",
        ]
    )


def _row_source(
    suffix: str,
    shape: ConvShape,
    cfg: KernelConfig,
    vecs: int,
    tiles: list[Tile],
    ci_tail: int,
    nbi: int,
    nchw: bool,
    windowed: bool,
) -> list[str]:
    """The tile functions of one output row of `vecs` vectors, and row_{suffix}, which runs them all."""
    out = []
    names = []
    for t_index, tile in enumerate(tiles):
        name = f"tile_{suffix}_{t_index}"
        names.append(name)
        out.append(_emit_tile(name, shape, cfg, vecs, tile, ci_tail, nbi, nchw, windowed))
    body = [
        f"static void row_{suffix}(const float *restrict in_b, const float *restrict wt_j, float *restrict out_r, "
        f"const float *restrict bias_j, int oh, int ib0, int ib1,{IW_PARAM[windowed]} const dc_act *ep, "
        "const float *restrict res_r, int t0, int t1)",
        "{",
        "    /* tiles [t0, t1) of the row: all of them (0, NT), except where a layer's single row is split by tiles */",
        "    const int ih0 = oh * SH - PT;",
        "    const int n_lo = ih0 < 0 ? (-ih0 + DH - 1) / DH : 0;  /* taps n with 0 <= ih0 + n * DH < H */",
        "    const int n_hi = ih0 >= H ? 0 : (H - ih0 + DH - 1) / DH < KH ? (H - ih0 + DH - 1) / DH : KH;",
        f"    const int init = ib0 == {'iw' if windowed else '0'};  /* the first block of the (window's) input */",
    ]
    for name, tile in zip(names, tiles, strict=True):
        first, end = tile.first, tile.first + tile.count
        if tile.count == 1:
            body.append(f"    if (t0 <= {first} && {first} < t1)")
            body.append(
                f"        {name}(in_b, wt_j, out_r, bias_j, {first * cfg.wob}, ih0, n_lo, n_hi, ib0, ib1,{IW_ARG[windowed]} init, ep, "
                "res_r);"
            )
        else:
            body.append(f"    for (int t = t0 > {first} ? t0 : {first}; t < (t1 < {end} ? t1 : {end}); ++t)")
            body.append(
                f"        {name}(in_b, wt_j, out_r, bias_j, t * {cfg.wob}, ih0, n_lo, n_hi, ib0, ib1,{IW_ARG[windowed]} init, ep, res_r);"
            )
    body.append("}")
    out.append("\n".join(body))
    return out


# The window argument of a grouped-window kernel's row and tile functions (others do not take it).
IW_PARAM = {True: " int iw,", False: ""}
IW_ARG = {True: " iw,", False: ""}


def _tail_call(prefix: str, v_tail: int, vecs: int, windowed: bool = False) -> str:
    """The call of the narrower row function for the last output-channel block, when C_o leaves a tail of vectors."""
    if v_tail == vecs:
        return ""
    return (
        f"if (j % NJ == NJ - 1) row_{prefix}{v_tail}(in_b, wt_j, out_r, bias_j, oh, ib0, ib1,{IW_ARG[windowed]} fin, res_r, "
        "t0, t1); "
        "else "
    )


# Where a task's image and group start in the input: blocks of a blocked tensor, or channels of an NCHW one.
_INPUT_AT = {
    "in_b": "in + ((size_t)b * in_blocks + (size_t)in_first + (size_t)g * NBI) * H * W * CB",
    "in_x": "in + ((size_t)b * in_blocks + (size_t)in_first) * H * W",
}


def _driver(
    signature: str, input_at: str, vecs: int, v_tail: int, prefix: str, views_check: str, windowed: bool
) -> str:
    """The entry `signature` names: tasks over images, register blocks and runs of rows, each running row_{prefix}."""
    tail_call = _tail_call(prefix, v_tail, vecs, windowed)
    return f"""
/* Returns 0, or a negative code for an argument out of range (the Python wrapper checks first).
 * Tasks are handed out one at a time (dynamic schedule): on a shared machine a thread whose core is taken by
 * another process then does fewer tasks instead of holding the others back. Each output element is still
 * computed by exactly one task in a fixed order, so results do not depend on the schedule. */
{signature[:-1]}
{{
    if (batch < 1 || cib_blocks < 1 || rows < 1 || threads < 1) return -1;
    {views_check}
    if (cib_blocks > NBI) cib_blocks = NBI;
    const dc_act ep = {{act, alpha, beta}};
    /* A layer of one output row (a 1x1 layer's plane as one line) splits that row by register tiles instead. */
    const long units = HO > 1 ? HO : NT;
    if (rows > units) rows = (int)units;
    const long row_tasks = (units + rows - 1) / rows;
    const long tasks = (long)batch * G * NJ * row_tasks;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if(threads > 1 && PARALLEL(batch))
    for (long t = 0; t < tasks; ++t) {{
        long b, j, rt;
        if (parallel_rows) {{ j = t % (G * NJ); rt = (t / (G * NJ)) % row_tasks; b = t / (G * NJ * row_tasks); }}
        else {{ rt = t % row_tasks; j = (t / row_tasks) % (G * NJ); b = t / (G * NJ * row_tasks); }}
        const long g = j / NJ;  /* the group of register block j; its channel blocks follow the previous group's */
        const float *in_b = {_INPUT_AT[input_at]};
        const float *wt_j = wt + WOFF(j);
        const float *bias_j = bias + (size_t)j * COB;
        const int iw = WLO(j), iend = WHI(j);  /* the input blocks register block j reduces over */
        const size_t ob = (size_t)g * NBO + (size_t)(j % NJ) * VEC;  /* first output block of the register block */
        float *out_j = out + ((size_t)b * out_blocks + (size_t)out_first + ob) * HO * WO * CB;
        const float *res_j = residual ? residual + ((size_t)b * res_blocks + (size_t)res_first + ob) * HO * WO * CB : 0;
        const int u0 = (int)(rt * rows), u1 = u0 + rows < units ? u0 + rows : (int)units;
        const int r0 = HO > 1 ? u0 : 0, r1 = HO > 1 ? u1 : 1, t0 = HO > 1 ? 0 : u0, t1 = HO > 1 ? NT : u1;
        for (int ib0 = iw; ib0 < iend; ib0 += cib_blocks) {{
            const int ib1 = ib0 + cib_blocks < iend ? ib0 + cib_blocks : iend;
            const dc_act *fin = ib1 < iend ? 0 : &ep;  /* the epilogue runs after the last cache block */
            for (int oh = r0; oh < r1; ++oh) {{
                float *out_r = out_j + (size_t)oh * WO * CB;
                const float *res_r = res_j ? res_j + (size_t)oh * WO * CB : 0;
                {tail_call}row_{prefix}{vecs}(in_b, wt_j, out_r, bias_j, oh, ib0, ib1,{IW_ARG[windowed]} fin, res_r, t0, t1);
            }}
        }}
    }}
    return 0;
}}
"""


# NCHW in and out in one pass (C_NCHW_SIGNATURE): in a grouped layer a register block reads only
# its group's input blocks, so a task converts them into a per-thread scratch (once per group and image: a thread's
# contiguous tasks mostly share the group) and transposes its output blocks back while they are in cache.
def nchw_prelude(shape: ConvShape, scratch_floats: int) -> str:
    """What every one-pass NCHW entry starts with: the shared transposes, the calling thread's number (its slice of
    the scratch), the layer's channel counts and the scratch floats per thread."""
    # An exported layer's header defines DC_LANES too (the same number).
    return f"""#ifndef DC_LANES
#define DC_LANES CB
#endif
{c_text("dc_transpose.h")}
#ifdef _OPENMP
#include <omp.h>
#define DC_THREAD omp_get_thread_num()
#else
#define DC_THREAD 0
#endif
#define CI {shape.ci}
#define CO {shape.co}
#define SCRATCH ((size_t){scratch_floats})
"""


def grouped_scratch_floats(shape: ConvShape, cfg: KernelConfig) -> int:
    """Floats of scratch the grouped NCHW entry needs per thread: one group's input blocks and one task's output."""
    view = shape.kernel_view()
    nbi = -(-view.cig // cfg.lanes)
    return (nbi * view.h * view.w + cfg.vectors * view.ho * view.wo) * cfg.lanes


def _grouped_nchw_source(shape: ConvShape, cfg: KernelConfig, tail_call: str, vecs: int) -> str:
    return (
        nchw_prelude(shape, grouped_scratch_floats(shape, cfg))
        + f"""#define CIG {shape.cig}
#define COG {shape.cog}

{C_NCHW_SIGNATURE[:-1]}
{{
    if (batch < 1 || cib_blocks < 1 || threads < 1) return -1;
    if (cib_blocks > NBI) cib_blocks = NBI;
    const dc_act ep = {{relu ? DC_ACT_RELU : DC_ACT_NONE, 0.0f, 0.0f}};
    const float *res_r = 0;
    const long tasks = (long)batch * G * NJ;
    #pragma omp parallel num_threads(threads) if(threads > 1 && PARALLEL(batch))
    {{
        float *in_b = scratch + (size_t)DC_THREAD * SCRATCH;  /* one group's input blocks of one image */
        float *out_j = in_b + (size_t)NBI * H * W * CB;
        long converted = -1;  /* the (image, group) in in_b */
        #pragma omp for schedule(static)
        for (long t = 0; t < tasks; ++t) {{
            const long j = t % (G * NJ), b = t / (G * NJ), g = j / NJ;
            if (converted != b * G + g) {{
                for (int k = 0; k < NBI; ++k)
                    dc_planes_to_block(x + ((size_t)b * CI + (size_t)g * CIG + (size_t)k * CB) * H * W,
                                       in_b + (size_t)k * H * W * CB, (long)H * W, 0, (long)H * W, CB);
                converted = b * G + g;
            }}
            const float *wt_j = wt + WOFF(j);
            const float *bias_j = bias + (size_t)j * COB;
            for (int ib0 = 0; ib0 < NBI; ib0 += cib_blocks) {{
                const int ib1 = ib0 + cib_blocks < NBI ? ib0 + cib_blocks : NBI;
                const dc_act *fin = ib1 < NBI ? 0 : &ep;
                const int t0 = 0, t1 = NT;  /* whole rows */
                for (int oh = 0; oh < HO; ++oh) {{
                    float *out_r = out_j + (size_t)oh * WO * CB;
                    {tail_call}row_v{vecs}(in_b, wt_j, out_r, bias_j, oh, ib0, ib1, fin, res_r, t0, t1);
                }}
            }}
            const int first = (int)(j % NJ) * VEC, count = NBO - first < VEC ? NBO - first : VEC;
            for (int v = 0; v < count; ++v)
                dc_block_to_planes(out_j + (size_t)v * HO * WO * CB,
                                   y + ((size_t)b * CO + (size_t)g * COG + (size_t)(first + v) * CB) * HO * WO,
                                   (long)HO * WO, 0, (long)HO * WO, CB);
        }}
    }}
    return 0;
}}
"""
    )


# dc_conv_fused refuses views that do not fit: IN_BLOCKS and OUT_BLOCKS are the layer's channel blocks per image.
VIEWS_CHECK = """if (in_first < 0 || in_first + IN_BLOCKS > in_blocks || out_first < 0 || out_first + OUT_BLOCKS > out_blocks
        || (residual && (res_first < 0 || res_first + OUT_BLOCKS > res_blocks)) || act < 0 || act >= DC_ACT_COUNT)
        return -2;"""
# dc_conv_fused_x's: its input view counts channels (CI of the layer's, see C_FUSED_X_SIGNATURE).
VIEWS_CHECK_X = VIEWS_CHECK.replace("in_first + IN_BLOCKS > in_blocks", "in_first + CI_X > in_blocks")


def conv_wrapper_source() -> str:
    """dc_conv (see C_SIGNATURE) as dc_conv_fused on whole tensors: the same in every kernel kind."""
    return f"""{C_SIGNATURE[:-1]}
{{
    return dc_conv_fused(in, wt, bias, out, 0, batch, cib_blocks, rows, parallel_rows, threads, IN_BLOCKS, 0,
                         OUT_BLOCKS, 0, 0, 0, relu ? DC_ACT_RELU : DC_ACT_NONE, 0.0f, 0.0f);
}}
"""


def bench_source() -> str:
    """dc_bench (see C_BENCH_SIGNATURE) over the dc_conv defined before it: the same in every kernel kind."""
    return f"""static double dc_now(void)
{{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}}

{C_BENCH_SIGNATURE[:-1]}
{{
    for (int i = 0; i < warmup; ++i) {{
        int code = dc_conv(in, wt, bias, out, batch, cib_blocks, rows, parallel_rows, threads, 0);
        if (code) return code;
    }}
    int n = 0;
    double total = 0.0;
    while (n < max_samples && (n < min_samples || total < min_seconds)) {{
        double t0 = dc_now();
        int code = dc_conv(in, wt, bias, out, batch, cib_blocks, rows, parallel_rows, threads, 0);
        double dt = dc_now() - t0;
        if (code) return code;
        samples[n++] = dt;
        total += dt;
    }}
    return n;
}}
"""
