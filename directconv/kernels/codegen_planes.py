"""The NCHW entry (dc_conv_nchw, codegen.C_NCHW_SIGNATURE) of depthwise kernels: each output plane is convolved from
its input plane where it lies, nothing converted and no scratch.

A depthwise layer (one input channel per group, C_o = k * C_i) has no reduction over channels: output plane o is a
2-D convolution of input plane o / k with its own kh x kw weights. In NCHW the vectors run along an output row:
lanes hold W_o,b consecutive output pixels, each weight is broadcast from the kernel's packed weights (which hold,
per block of output channels, each tap's weights side by side: codegen_lanes' packing, shared by both entries).
A tile is R output rows x V vectors of a row (model/depthwise_nchw.py chooses R and V): an input row vector, once
loaded, serves every output row of the tile that reads it, so a 3x3 tile of R rows loads (R + 2) * 3 vectors per
9 * R multiply-adds of one vector column.

Columns: the vectors of an output row start at multiples of the lanes; a row whose width is not a multiple ends
with a vector computed again from the row's end (the same values over pixels the tile itself wrote), so every store
is a whole vector and the row is at least one vector wide (model.depthwise_nchw.has_plane_entry). Loads that would
reach into the left or right padding read the nearest whole vector inside the row and move its lanes into place,
zeroing the padding lanes (a shuffle and a mask known when the kernel is generated), so nothing reads outside the
plane. Stride 2 along the row reads two vectors and keeps every other lane. Rows of padding are skipped at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa
from directconv.core.shape import ConvShape
from directconv.kernels.codegen import C_NCHW_SIGNATURE, relu_lines
from directconv.model.depthwise_nchw import input_vectors, plane_tile


@dataclass(frozen=True)
class Column:
    """A run of output vectors of a row that share one piece of code: interior runs loop, edge vectors stand alone."""

    start: int  # output column of the first vector
    count: int  # vectors run one after the other (an interior loop's trip count times its width)
    width: int  # vectors per tile (V for interior runs, 1 at an edge)
    edge: bool  # some tap reads padding (columns outside the input row)


def _is_edge(shape: ConvShape, start: int, lanes: int, width: int) -> bool:
    """Whether a tile of `width` vectors from output column `start` reads an input vector not wholly in the row."""
    first, last = input_vectors(shape, lanes, width)
    return start * shape.sw + first * lanes < 0 or start * shape.sw + (last + 1) * lanes > shape.w


def plan_columns(shape: ConvShape, lanes: int, v: int) -> list[Column]:
    """The output vectors of a row, in order: edge vectors alone, interior ones in runs of `v` (then narrower)."""
    starts = [j * lanes for j in range(shape.wo // lanes)]
    if shape.wo % lanes:
        starts.append(shape.wo - lanes)  # the last vector, computed again from the row's end
    columns: list[Column] = []
    run: list[int] = []

    def flush() -> None:
        while run:
            width = v if len(run) >= v and not _is_edge(shape, run[0], lanes, v) else 1
            whole = len(run) // width * width if width == v else 1
            if width == v:  # a loop of whole tiles as long as their last vector stays interior
                while _is_edge(shape, run[0] + (whole - v) * lanes, lanes, v):
                    whole -= v
            columns.append(Column(run[0], whole, width, False))
            del run[:whole]

    for start in starts:
        edge = _is_edge(shape, start, lanes, 1)
        if edge or (run and start != run[-1] + lanes):
            flush()
        if edge:
            columns.append(Column(start, 1, 1, True))
        else:
            run.append(start)
    flush()
    return columns


def _input_vector(shape: ConvShape, lanes: int, row: str, first: str, known: int | None) -> str:
    """C expression of the input vector of row pointer `row` holding columns [first, first + lanes). Where the
    column is `known` when generating, columns outside the row read as zeros (padding) and nothing outside the row
    is read: a whole vector inside the row, its lanes moved into place, the others masked."""
    if known is None:
        return f"VLOAD({row} + {first})"
    cols = [known + k for k in range(lanes)]
    valid = [0 <= c < shape.w for c in cols]
    if all(valid):
        return f"VLOAD({row} + {known})"
    if not any(valid):
        return "(vf){0}"
    inside = min(max(known, 0), shape.w - lanes)
    index = ", ".join(str(c - inside if ok else 0) for c, ok in zip(cols, valid, strict=True))
    mask = ", ".join("-1" if ok else "0" for ok in valid)
    loaded = f"VLOAD({row} + {inside})"
    return f"(vf)((vi)__builtin_shufflevector({loaded}, {loaded}, {index}) & (vi){{{mask}}})"


def _a(j: int) -> str:
    """The C name of input vector j of a row (j < 0: left of the tile's first column)."""
    return f"A{j}" if j >= 0 else f"Am{-j}"


def _tap_vector(shape: ConvShape, lanes: int, k: int, m: int) -> str:
    """C expression of what output vector k of a tile multiplies at tap column m, from the row's input vectors
    A<j> (model.depthwise_nchw.input_vectors): one shuffle of two of them at stride 1, two at stride 2."""
    base = k * lanes * shape.sw + m * shape.dw - shape.pl  # input column of lane 0, from c * SW
    j, r = divmod(base, lanes)
    positions = [r + lane * shape.sw for lane in range(lanes)]  # within A<j> | A<j+1> | A<j+2>
    a = [_a(j + i) for i in range(3)]
    if positions == list(range(lanes)):  # the vector itself
        return a[0]
    first = f"__builtin_shufflevector({a[0]}, {a[1]}, {', '.join(str(min(p, 2 * lanes - 1)) for p in positions)})"
    if all(p < 2 * lanes for p in positions):
        return first
    index = ", ".join(str(lane if p < 2 * lanes else lanes + p - 2 * lanes) for lane, p in enumerate(positions))
    return f"__builtin_shufflevector({first}, {a[2]}, {index})"


def _tile(name: str, shape: ConvShape, lanes: int, rows: int, width: int, edge_start: int | None) -> str:
    """tile(x_p, w_p, bias, y_p, oh, c, relu): output rows [oh, oh + rows) x `width` vectors from column c; x_p and
    y_p are the input and output planes, w_p the channel's first packed weight (taps CB floats apart)."""
    acc = [[f"a{r}_{k}" for k in range(width)] for r in range(rows)]
    lines = [
        f"static inline __attribute__((always_inline)) void {name}(const float *restrict x_p, "
        "const float *restrict w_p, float bias, float *restrict y_p, int oh, int c, int relu)",
        "{",
        "    const int ih0 = oh * SH - PT;",
    ]
    for n in range(shape.kh):
        lines.append(
            "    const vf "
            + ", ".join(f"w{n}_{m} = (vf){{0}} + w_p[{(n * shape.kw + m) * lanes}]" for m in range(shape.kw))
            + ";"
        )
    lines.append("    vf " + ", ".join(f"{a} = (vf){{0}} + bias" for row in acc for a in row) + ";")
    # Every input row the tile reads (offset from ih0), with the (output row, tap row) pairs that read it.
    readers: dict[int, list[tuple[int, int]]] = {}
    for r in range(rows):
        for n in range(shape.kh):
            readers.setdefault(r * shape.sh + n * shape.dh, []).append((r, n))
    first, last = input_vectors(shape, lanes, width)
    for dr, pairs in sorted(readers.items()):
        lines.append(f"    if ((unsigned)(ih0 + {dr}) < (unsigned)H) {{")
        lines.append(f"        const float *restrict xr = x_p + (ptrdiff_t)(ih0 + {dr}) * W;")
        for j in range(first, last + 1):
            known = None if edge_start is None else edge_start * shape.sw + j * lanes
            vector = _input_vector(shape, lanes, "xr", f"c * SW + {j * lanes}", known)
            lines.append(f"        const vf {_a(j)} = {vector};")
        for m in range(shape.kw):
            for k in range(width):
                fmas = " ".join(f"{acc[r][k]} += w{n}_{m} * x;" for r, n in pairs)
                lines.append(f"        {{ const vf x = {_tap_vector(shape, lanes, k, m)}; {fmas} }}")
        lines.append("    }")
    lines += relu_lines(acc, "relu")
    for r in range(rows):
        lines.append(
            "    "
            + " ".join(
                f"VSTORE(y_p + (ptrdiff_t)(oh + {r}) * WO + c + {k * lanes}, {acc[r][k]});" for k in range(width)
            )
        )
    lines.append("}")
    return "\n".join(lines)


def _row(name: str, shape: ConvShape, lanes: int, rows: int, columns: list[Column]) -> tuple[list[str], str]:
    """The tiles of `rows` output rows and the function that runs them along a whole row."""
    tiles, calls = [], []
    for index, col in enumerate(columns):
        tile = f"{name}_{index}"
        tiles.append(_tile(tile, shape, lanes, rows, col.width, col.start if col.edge else None))
        args = "x_p, w_p, bias, y_p, oh"
        if col.count == col.width:
            calls.append(f"    {tile}({args}, {col.start}, relu);")
        else:
            end = col.start + col.count * lanes
            calls.append(f"    for (int c = {col.start}; c < {end}; c += {col.width * lanes}) {tile}({args}, c, relu);")
    body = [
        f"static void {name}(const float *restrict x_p, const float *restrict w_p, float bias, float *restrict y_p, "
        "int oh, int relu)",
        "{",
        *calls,
        "}",
    ]
    return tiles, "\n".join(body)


def planes_nchw_source(shape: ConvShape, cfg: KernelConfig, tile: tuple[int, int] | None = None) -> str:
    """The tiles and dc_conv_nchw of a depthwise kernel whose shape has_plane_entry (see the module docstring), to
    follow codegen_lanes' source (its vector type and layer constants). `tile` (R, V) replaces the model's."""
    isa = get_isa(cfg.isa)
    lanes = isa.lanes
    r, v = tile or plane_tile(isa, shape)
    r = min(r, shape.ho)
    columns = plan_columns(shape, lanes, v)
    out = [f"#define CI {shape.ci}\n#define CO {shape.co}\n#define COG {shape.co // shape.groups}"]
    heights = sorted({r, shape.ho % r} - {0})
    for rows in heights:
        tiles, row = _row(f"plane_{rows}", shape, lanes, rows, columns)
        out += [*tiles, row]
    blocks, rest = divmod(shape.ho, r)
    tail = f"        if (q1 > {blocks}) plane_{rest}(x_p, w_p, bias_o, y_p, {blocks * r}, relu);" if rest else ""
    out.append(
        f"""#define ROW_BLOCKS {blocks + (1 if rest else 0)}  /* of {r} output rows, the last of {rest or r} */

{C_NCHW_SIGNATURE[:-1]}
{{
    (void)cib_blocks; (void)scratch;  /* each plane is read where it lies: nothing to convert */
    if (batch < 1 || threads < 1) return -1;
    const long planes = (long)batch * CO;
    /* Few planes for the threads: each plane's row blocks are split into chunks too. */
    long chunks = planes >= 4L * threads ? 1 : (4L * threads + planes - 1) / planes;
    if (chunks > ROW_BLOCKS) chunks = ROW_BLOCKS;
    const long tasks = planes * chunks;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if(threads > 1 && PARALLEL(batch))
    for (long t = 0; t < tasks; ++t) {{
        const long p = t / chunks, q = t % chunks, b = p / CO;
        const int o = (int)(p % CO);
        const float *x_p = x + ((size_t)b * CI + (size_t)(o / COG)) * H * W;
        const float *w_p = wt + (size_t)(o / CB) * KH * KW * CB + (size_t)(o % CB);
        const float bias_o = bias[o];
        float *y_p = y + (size_t)p * HO * WO;
        const long q0 = q * ROW_BLOCKS / chunks, q1 = (q + 1) * ROW_BLOCKS / chunks;
        for (long k = q0; k < q1 && k < {blocks}; ++k) plane_{r}(x_p, w_p, bias_o, y_p, (int)k * {r}, relu);
{tail}
    }}
    return 0;
}}"""
    )
    return "\n\n".join(out)
