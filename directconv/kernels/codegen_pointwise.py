"""The NCHW entry (dc_conv_nchw, codegen.C_NCHW_SIGNATURE) of plain 1x1 stride-1 kernels: a matrix product on the
planes, with no conversion and no scratch.

Y[c_o][p] = bias[c_o] + sum over c_i of W[c_o][c_i] X[c_i][p]. A tile is R output channels x V vectors of pixels
(model/pointwise.py chooses R and V): per input channel it loads V vectors of the plane X[c_i] and multiplies each
by R weights broadcast from the kernel's packed weights, which already hold, for a block of C_o,b output channels,
each input channel's C_o,b weights side by side (codegen's layout, so the blocked and the NCHW entries share one
packing). The input-channel loop runs to the end in registers, so each output vector is stored once. Tasks are
(image, run of V * lanes pixels, block of C_o,b channels); the last run of a plane also takes the pixels past the
last whole run, and its last partial vector is computed again from the plane's end (the same values over pixels
the task itself wrote), so nothing is masked and the plane is at least one vector long (has_nchw_entry).
"""

from __future__ import annotations

from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa
from directconv.core.shape import ConvShape
from directconv.kernels.codegen import C_NCHW_SIGNATURE, relu_lines
from directconv.model.pointwise import nchw_tile


def _tile(name: str, r: int, v: int, lanes: int) -> str:
    """tile(x, wt, bias, y, p, relu): channels [0, r) of the packed block wt at pixels [p, p + v * lanes)."""
    acc = [[f"a{i}_{k}" for k in range(v)] for i in range(r)]
    lines = [
        f"static void {name}(const float *restrict x, const float *restrict wt, const float *restrict bias, "
        "float *restrict y, long p, int relu)",
        "{",
    ]
    for i in range(r):
        lines.append("    vf " + ", ".join(f"{a} = (vf){{0}} + bias[{i}]" for a in acc[i]) + ";")
    lines.append("    for (int c = 0; c < CI; ++c) {")
    lines.append("        const float *restrict xc = x + (size_t)c * HW + p, *restrict wc = wt + (size_t)c * COB;")
    lines.append("        " + " ".join(f"const vf x{k} = VLOAD(xc + {k * lanes});" for k in range(v)))
    for i in range(r):
        lines.append(
            f"        {{ const float w = wc[{i}]; " + " ".join(f"{acc[i][k]} += w * x{k};" for k in range(v)) + " }"
        )
    lines.append("    }")
    lines += relu_lines(acc, "relu")
    for i in range(r):
        lines.append(
            "    " + " ".join(f"VSTORE(y + (size_t){i} * HW + p + {k * lanes}, {acc[i][k]});" for k in range(v))
        )
    lines.append("}")
    return "\n".join(lines)


def pointwise_nchw_source(shape: ConvShape, cfg: KernelConfig) -> str:
    """The tile functions and dc_conv_nchw of a kernel whose shape has_nchw_entry (see the module docstring), to follow
    codegen.generate's source (its vector type, macros and packed-weight constants)."""
    isa = get_isa(cfg.isa)
    lanes = isa.lanes
    r, v = nchw_tile(isa, cfg.cob)
    hw = shape.h * shape.w
    run = v * lanes
    full = hw // run  # whole runs of V vectors
    rest_vectors, partial = divmod(hw - full * run, lanes)
    # Channel counts of a block's tiles: whole tiles of R, and what the last (narrower) C_o block leaves.
    last_block = shape.co - (-(-shape.co // cfg.cob) - 1) * cfg.cob
    rows = sorted({r, *(n for n in (cfg.cob % r, last_block % r) if n)})
    widths = sorted({v, *(n for n in (rest_vectors, 1 if partial else 0) if n)})
    out = [
        f"#define CI {shape.ci}\n#define CO {shape.co}\n#define HW {hw}L\n"
        f"#define RUNS {max(full, 1)}L  /* tasks along a plane */\n#define LAST_RUN {max(full, 1) - 1}L"
    ]
    out += [_tile(f"pw_{n}_{k}", n, k, lanes) for n in rows for k in widths]

    def calls(n: int) -> list[str]:
        """The tiles of one task of n output channels (one of `rows`)."""
        indent, lines, tail = "                ", [], []
        if full:
            lines.append(f"{indent}if (t < {full}) pw_{n}_{v}(x_b, wt_c, bias_c, y_c, t * {run}, relu);")
        if rest_vectors:
            tail.append(f"pw_{n}_{rest_vectors}(x_b, wt_c, bias_c, y_c, {full * run}, relu);")
        if partial:
            tail.append(f"pw_{n}_1(x_b, wt_c, bias_c, y_c, {hw - lanes}, relu);")
        if tail:
            lines.append(f"{indent}if (t == LAST_RUN) {{ " + " ".join(tail) + " }")
        return lines

    switch = []
    for n in rows:
        switch.append(f"            {'if' if n == rows[0] else 'else if'} (n == {n}) {{")
        switch += calls(n)
        switch.append("            }")
    out.append(
        f"""{C_NCHW_SIGNATURE[:-1]}
{{
    (void)cib_blocks; (void)scratch;  /* one pass over all input channels, in registers; nothing to keep */
    if (batch < 1 || threads < 1) return -1;
    const long blocks = (CO + COB - 1) / COB, tasks = (long)batch * RUNS * blocks;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if(threads > 1 && PARALLEL(batch))
    for (long task = 0; task < tasks; ++task) {{
        const long j = task % blocks, t = (task / blocks) % RUNS, b = task / (blocks * RUNS);
        const float *x_b = x + (size_t)b * CI * HW;
        const int channels = CO - (int)j * COB < COB ? CO - (int)j * COB : COB;
        for (int c0 = 0; c0 < channels; c0 += {r}) {{
            const int n = channels - c0 < {r} ? channels - c0 : {r};
            const float *wt_c = wt + (size_t)j * NBI * CB * COB + c0, *bias_c = bias + (size_t)j * COB + c0;
            float *y_c = y + ((size_t)b * CO + (size_t)j * COB + c0) * HW;
{chr(10).join(switch)}
        }}
    }}
    return 0;
}}"""
    )
    return "\n\n".join(out)
