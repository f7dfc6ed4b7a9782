"""The text of a C export: the kernels of some layers for one machine, with a small documented C API around them.

`directconv export` (export_cli.py) chooses the configurations and writes these files; this module only builds
their text from (layer, config) pairs and a build target, so it does no I/O and needs no compiler.

An export is a folder:
  directconv.h          the API: per layer its shape, config and functions; generic layout conversions
  directconv_common.c   the layout conversions (NCHW <-> NCHWc)
  layer_<name>.c        one per layer: the generated kernel (kernels/generator.py), its two exported functions renamed
                        to <prefix>_<name>_conv / _bench, then weight packing and a `run_blocked` entry point. One
                        file per layer because every generated kernel defines the same macros and static helpers.
  Makefile              static and shared library, with the machine's flags and, for a foreign architecture, its
                        cross compiler
  README.md, manifest.json
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from directconv.core.config import KernelConfig
from directconv.core.shape import LANE_KINDS, ConvShape, kernel_kind
from directconv.kernels import codegen, compiler, cross, generator, layout
from directconv.kernels.layout import blocks

__all__ = ["EXPORT_VERSION", "ExportLayer", "check_prefix", "export_files", "layer_c_names"]

# Bumped when the exported API or file set changes (manifest.json carries it).
EXPORT_VERSION = 1
LIBRARY = "libdirectconv_export"
# Code-generation flags of the toolkit's own builds, minus "-shared" (the Makefile builds objects first).
OPT_FLAGS: tuple[str, ...] = tuple(f for f in compiler.BASE_FLAGS if f != "-shared")

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_C_KEYWORDS = frozenset(
    [
        "auto",
        "break",
        "case",
        "char",
        "const",
        "continue",
        "default",
        "do",
        "double",
        "else",
        "enum",
        "extern",
        "float",
        "for",
        "goto",
        "if",
        "inline",
        "int",
        "long",
        "register",
        "restrict",
        "return",
        "short",
        "signed",
        "sizeof",
        "static",
        "struct",
        "switch",
        "typedef",
        "union",
        "unsigned",
        "void",
        "volatile",
        "while",
        "asm",
        "bool",
        "true",
        "false",
    ]
)


@dataclass(frozen=True)
class ExportLayer:
    """One layer of an export: its name (suite name or a description), shape, config and where the config came
    from ("tuned", "model"), with the reason in words."""

    name: str
    shape: ConvShape
    config: KernelConfig
    source: str
    detail: str = ""


def check_prefix(prefix: str) -> str:
    """The C symbol prefix, validated: a letter, then letters, digits or '_', at most 32, not a C keyword."""
    if not isinstance(prefix, str) or not _IDENTIFIER.fullmatch(prefix) or prefix in _C_KEYWORDS:
        raise ValueError(
            f"--prefix must be a C identifier (a letter, then letters, digits or '_', at most 32 characters, not a "
            f"C keyword), got {prefix!r}; e.g. --prefix mynet"
        )
    return prefix


def layer_c_names(names: list[str]) -> list[str]:
    """A unique C name per layer: a suite layer `vgg16:conv3_2` becomes vgg16_conv3_2, an explicit shape shape<i>."""
    out: list[str] = []
    for i, name in enumerate(names):
        base = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") if ":" in name else ""
        if not base or not base[0].isalpha():
            base = f"shape{i}"
        candidate, n = base, 2
        while candidate in out:
            candidate, n = f"{base}_{n}", n + 1
        out.append(candidate)
    return out


def _c_comment(text: str) -> str:
    return text.replace("*/", "* /")


def _label(layer: ExportLayer) -> str:
    """`name: shape`, or the shape alone when the name is its description (an explicit shape)."""
    shape = layer.shape.describe()
    return _c_comment(shape if layer.name == shape else f"{layer.name}: {shape}")


def _layer_facts(layer: ExportLayer) -> dict[str, int]:
    s, cfg = layer.shape, layer.config
    lanes = cfg.lanes
    cib_blocks, rows, parallel_rows = cross.driver_arguments(cfg, s)
    return dict(
        lanes=lanes,
        nbi=blocks(s.ci, lanes),
        nbo=blocks(s.co, lanes),
        weights=int(np.prod(layout.weight_shape(s, lanes, cfg.cob))),
        bias=layout.bias_length(s, lanes, cfg.cob),
        cib_blocks=cib_blocks,
        rows=rows,
        parallel_rows=parallel_rows,
    )


def _pack_text(s: ConvShape, cfg: KernelConfig) -> str:
    """The C body of <layer>_pack_weights: kernels/layout.py's packing for the layer's kernel kind, in C."""
    lanes, cob = cfg.lanes, cfg.cob
    w_at = f"oihw[(((size_t)oc * {s.cig} + i) * {s.kh} + y) * {s.kw} + x]"
    if kernel_kind(s, lanes) in LANE_KINDS:
        nbo = blocks(s.co, lanes)
        return f"""    /* packed_w [{nbo}][{s.kh}][{s.kw}][{s.cig}][{lanes}]: output channel b * {lanes} + l, lane by lane */
    size_t k = 0;
    for (int b = 0; b < {nbo}; ++b)
        for (int y = 0; y < {s.kh}; ++y)
            for (int x = 0; x < {s.kw}; ++x)
                for (int i = 0; i < {s.cig}; ++i)
                    for (int l = 0; l < {lanes}; ++l) {{
                        const int oc = b * {lanes} + l;
                        packed_w[k++] = oc < {s.co} ? {w_at} : 0.0f;
                    }}
    for (int o = 0; o < {nbo * lanes}; ++o) packed_bias[o] = bias && o < {s.co} ? bias[o] : 0.0f;"""
    if kernel_kind(s, lanes) == "grouped-window":
        nj = blocks(blocks(s.co, lanes) * lanes, cob)
        return f"""    /* packed_w: register block j's window of input blocks [dc_wlo[j], dc_whi[j]) after block j-1's, each
     * [blocks][{s.kh}][{s.kw}][{lanes}][{cob}], zero where input channel c is not in output channel oc's group */
    size_t k = 0;
    for (int j = 0; j < {nj}; ++j)
        for (int ib = dc_wlo[j]; ib < dc_whi[j]; ++ib)
            for (int y = 0; y < {s.kh}; ++y)
                for (int x = 0; x < {s.kw}; ++x)
                    for (int l = 0; l < {lanes}; ++l)
                        for (int o = 0; o < {cob}; ++o) {{
                            const int oc = j * {cob} + o, i = ib * {lanes} + l - oc / {s.cog} * {s.cig};
                            packed_w[k++] = oc < {s.co} && 0 <= i && i < {s.cig} ? {w_at} : 0.0f;
                        }}
    for (int o = 0; o < {nj * cob}; ++o) packed_bias[o] = bias && o < {s.co} ? bias[o] : 0.0f;"""
    nj = blocks(blocks(s.cog, lanes) * lanes, cob)
    nbi = blocks(s.cig, lanes)
    return f"""    /* packed_w [{s.groups} * {nj}][{nbi}][{s.kh}][{s.kw}][{lanes}][{cob}]: each group's blocks after the previous
     * group's, zero past the group's C_o / groups = {s.cog} and C_i / groups = {s.cig} channels */
    size_t k = 0;
    for (int j = 0; j < {s.groups * nj}; ++j)
        for (int ib = 0; ib < {nbi}; ++ib)
            for (int y = 0; y < {s.kh}; ++y)
                for (int x = 0; x < {s.kw}; ++x)
                    for (int l = 0; l < {lanes}; ++l)
                        for (int o = 0; o < {cob}; ++o) {{
                            const int g = j / {nj}, og = (j % {nj}) * {cob} + o, i = ib * {lanes} + l;
                            const int oc = g * {s.cog} + og;
                            packed_w[k++] = og < {s.cog} && i < {s.cig} ? {w_at} : 0.0f;
                        }}
    for (int o = 0; o < {s.groups * nj * cob}; ++o) {{
        const int g = o / {nj * cob}, og = o % {nj * cob};
        packed_bias[o] = bias && og < {s.cog} ? bias[g * {s.cog} + og] : 0.0f;
    }}"""


def _layer_api_decls(p: str, c: str, layer: ExportLayer) -> str:
    s, cfg = layer.shape, layer.config
    f = _layer_facts(layer)
    P, C = p.upper(), c.upper()
    pad = f"{s.pt},{s.pb},{s.pl},{s.pr}"
    cfg_text = (
        f"isa={cfg.isa} C_o,b={cfg.cob} W_o,b={cfg.wob} unroll={cfg.unroll} "
        f"C_i,b={cfg.cib if cfg.cib is not None else 'all'} rows={cfg.rows if cfg.rows is not None else 'all'} "
        f"parallel={cfg.parallel} threads={cfg.threads}"
    )
    return f"""
/* ---- {_c_comment(layer.name)} ----
 * shape:  C_i={s.ci} -> C_o={s.co}, input {s.h}x{s.w}, kernel {s.kh}x{s.kw}, stride {s.sh}x{s.sw},
 *         padding top,bottom,left,right = {pad}, dilation {s.dh}x{s.dw}, groups {s.groups}, output {s.ho}x{s.wo}
 * OIHW weights: [{s.co}][{s.cig}][{s.kh}][{s.kw}] (C_i / groups inputs per filter); {kernel_kind(s, f["lanes"])} kernel
 * config: {cfg_text}
 *         ({layer.source}{": " + _c_comment(layer.detail.splitlines()[0]) if layer.detail else ""})
 * blocked input  {P}_{C}_IN_FLOATS  per image: [{f["nbi"]}][{s.h}][{s.w}][{f["lanes"]}]
 * blocked output {P}_{C}_OUT_FLOATS per image: [{f["nbo"]}][{s.ho}][{s.wo}][{f["lanes"]}]
 */
#define {P}_{C}_CI {s.ci}
#define {P}_{C}_CO {s.co}
#define {P}_{C}_H {s.h}
#define {P}_{C}_W {s.w}
#define {P}_{C}_KH {s.kh}
#define {P}_{C}_KW {s.kw}
#define {P}_{C}_GROUPS {s.groups}
#define {P}_{C}_HO {s.ho}
#define {P}_{C}_WO {s.wo}
#define {P}_{C}_IN_FLOATS {f["nbi"] * s.h * s.w * f["lanes"]}
#define {P}_{C}_OUT_FLOATS {f["nbo"] * s.ho * s.wo * f["lanes"]}
#define {P}_{C}_BIAS_FLOATS {f["bias"]}

/* Floats of the packed weights ({f["weights"]}); the packed bias has {P}_{C}_BIAS_FLOATS. */
size_t {p}_{c}_packed_weights_floats(void);
/* oihw: [C_o][C_i][kh][kw] float32; bias: [C_o] or NULL (zeros). Writes the packed layouts the kernel reads. */
void {p}_{c}_pack_weights(const float *oihw, const float *bias, float *packed_w, float *packed_bias);
/* out_blocked = conv(in_blocked) + bias, then max(0, .) if relu, for `batch` images in the blocked layout, with the
 * config's cache blocking. threads <= 0: the config's {cfg.threads}. Returns 0, or a negative code for batch < 1. */
int {p}_{c}_run_blocked(const float *in_blocked, const float *packed_w, const float *packed_bias, float *out_blocked,
                        int batch, int threads, int relu);
/* The raw kernel (dc_conv / dc_bench of kernels/c/directconv.h, arguments as documented there). */
int {p}_{c}_conv(const float *in, const float *wt, const float *bias, float *out, int batch, int cib_blocks,
                 int rows, int parallel_rows, int threads, int relu);
int {p}_{c}_bench(const float *in, const float *wt, const float *bias, float *out, int batch, int cib_blocks,
                  int rows, int parallel_rows, int threads, int warmup, double min_seconds, int min_samples,
                  int max_samples, double *samples);
"""


def header_text(p: str, c_names: list[str], layers: list[ExportLayer], machine_id: str, lanes: int) -> str:
    P = p.upper()
    listing = "\n".join(f" *   {p}_{c}  {_label(layer)}" for c, layer in zip(c_names, layers, strict=True))
    decls = "".join(_layer_api_decls(p, c, layer) for c, layer in zip(c_names, layers, strict=True))
    return f"""/* directconv export for machine {machine_id}: direct-convolution kernels and their C API.
 * Generated by `directconv export`; the exact configurations and provenance are in manifest.json.
 *
 * Layers:
{listing}
 *
 * Layouts (float32, c = {P}_LANES = {lanes} lanes, channels past the real count zero):
 *   activations, "blocked"  [N][ceil(C/c)][H][W][c]   (NCHWc; a layer's blocked output is the next layer's input)
 *   activations, plain      [N][C][H][W]              (NCHW)
 *   weights, plain          [C_o][C_i][kh][kw]        (OIHW), packed once by <layer>_pack_weights
 * Typical use: pack each layer's weights once; convert the network input with {p}_nchw_to_blocked; chain
 * <layer>_run_blocked calls; convert the result back with {p}_blocked_to_nchw. The kernels allocate nothing, and
 * their result does not depend on the thread count (OpenMP). Pointers need no particular alignment; outputs must
 * not overlap inputs.
 */
#ifndef {P}_DIRECTCONV_EXPORT_H
#define {P}_DIRECTCONV_EXPORT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {P}_LANES {lanes}
#define {P}_LAYER_COUNT {len(layers)}

/* Floats of an activation of n x c x h x w in the blocked layout with `lanes` lanes (ceil(c/lanes)*lanes channels). */
size_t {p}_blocked_floats(int n, int c, int h, int w, int lanes);
/* NCHW -> blocked, zero-filling the channels past c. Returns 0, or -1 for a dimension < 1. */
int {p}_nchw_to_blocked(const float *nchw, float *blocked, int n, int c, int h, int w, int lanes);
/* blocked -> NCHW (the first c channels). Returns 0, or -1 for a dimension < 1. */
int {p}_blocked_to_nchw(const float *blocked, float *nchw, int n, int c, int h, int w, int lanes);
{decls}
#ifdef __cplusplus
}}
#endif

#endif
"""


def common_text(p: str) -> str:
    return f"""/* directconv export: layout conversions between NCHW and the blocked layout NCHWc (see directconv.h). */
#include "directconv.h"

size_t {p}_blocked_floats(int n, int c, int h, int w, int lanes)
{{
    if (n < 1 || c < 1 || h < 1 || w < 1 || lanes < 1) return 0;
    return (size_t)n * (size_t)((c + lanes - 1) / lanes) * (size_t)lanes * (size_t)h * (size_t)w;
}}

int {p}_nchw_to_blocked(const float *nchw, float *blocked, int n, int c, int h, int w, int lanes)
{{
    if (n < 1 || c < 1 || h < 1 || w < 1 || lanes < 1) return -1;
    const int nb = (c + lanes - 1) / lanes;
    const size_t plane = (size_t)h * w;
    for (int b = 0; b < n; ++b)
        for (int cb = 0; cb < nb; ++cb)
            for (size_t px = 0; px < plane; ++px)
                for (int l = 0; l < lanes; ++l) {{
                    const int ch = cb * lanes + l;
                    blocked[(((size_t)b * nb + cb) * plane + px) * lanes + l] =
                        ch < c ? nchw[((size_t)b * c + ch) * plane + px] : 0.0f;
                }}
    return 0;
}}

int {p}_blocked_to_nchw(const float *blocked, float *nchw, int n, int c, int h, int w, int lanes)
{{
    if (n < 1 || c < 1 || h < 1 || w < 1 || lanes < 1) return -1;
    const int nb = (c + lanes - 1) / lanes;
    const size_t plane = (size_t)h * w;
    for (int b = 0; b < n; ++b)
        for (int ch = 0; ch < c; ++ch)
            for (size_t px = 0; px < plane; ++px)
                nchw[((size_t)b * c + ch) * plane + px] =
                    blocked[(((size_t)b * nb + ch / lanes) * plane + px) * lanes + ch % lanes];
    return 0;
}}
"""


def layer_text(p: str, c: str, layer: ExportLayer) -> str:
    """One layer's translation unit: the generated kernel with its exported names prefixed, then the API."""
    s, cfg = layer.shape, layer.config
    cfg.check_fits(s)
    f = _layer_facts(layer)
    kernel = generator.generate(cfg, s)
    return f"""/* directconv export: layer {_c_comment(layer.name)} ({s.describe()}). See directconv.h. */
#define dc_conv {p}_{c}_conv
#define dc_bench {p}_{c}_bench
#define dc_conv_nchw {p}_{c}_conv_nchw
#define dc_conv_fused {p}_{c}_conv_fused
#define dc_conv_fused_x {p}_{c}_conv_fused_x
#include "directconv.h"

{kernel}
/* ---- API of this layer (directconv.h) ---- */

size_t {p}_{c}_packed_weights_floats(void)
{{
    return {f["weights"]};
}}

/* OIHW (C_o, C_i / groups, kh, kw) -> the kernel's packed weights and bias (kernels/layout.py). */
void {p}_{c}_pack_weights(const float *oihw, const float *bias, float *packed_w, float *packed_bias)
{{
{_pack_text(s, cfg)}
}}

int {p}_{c}_run_blocked(const float *in_blocked, const float *packed_w, const float *packed_bias, float *out_blocked,
                        int batch, int threads, int relu)
{{
    return dc_conv(in_blocked, packed_w, packed_bias, out_blocked, batch, {f["cib_blocks"]}, {f["rows"]},
                   {f["parallel_rows"]}, threads > 0 ? threads : {cfg.threads}, relu != 0);
}}
"""


def makefile_text(target: cross.Target, sources: list[str]) -> str:
    triple = cross.TRIPLES.get(target.arch or "", "")
    foreign = target.arch is not None and target.arch != cross.host_arch()
    tools = ""
    if foreign:
        # Make's built-in CC/AR have origin "default": replace them with the cross tools, unless given.
        tools = f"""ifeq ($(origin CC),default)
CC = {triple}-gcc
endif
ifeq ($(origin AR),default)
AR = {triple}-ar
endif
"""
    objects = " ".join(s[:-2] + ".o" for s in sources)
    return f"""# directconv export for machine {target.machine} ({target.isa}{", " + target.arch if target.arch else ""}).
# `make` builds {LIBRARY}.a and {LIBRARY}.so. Extra flags: make CFLAGS="-Wall -Wextra"; another compiler: make CC=...
{tools}TARGET_FLAGS = {" ".join(target.flags)}
OPT_FLAGS = {" ".join(OPT_FLAGS)}
CFLAGS ?=
ALL_CFLAGS = $(OPT_FLAGS) $(TARGET_FLAGS) $(CFLAGS)
OBJECTS = {objects}

all: {LIBRARY}.a {LIBRARY}.so

{LIBRARY}.a: $(OBJECTS)
\trm -f $@
\t$(AR) rcs $@ $(OBJECTS)

{LIBRARY}.so: $(OBJECTS)
\t$(CC) $(ALL_CFLAGS) -shared -o $@ $(OBJECTS)

%.o: %.c directconv.h
\t$(CC) $(ALL_CFLAGS) -c -o $@ $<

clean:
\trm -f $(OBJECTS) {LIBRARY}.a {LIBRARY}.so

.PHONY: all clean
"""


def readme_text(p: str, c_names: list[str], layers: list[ExportLayer], target: cross.Target, lanes: int) -> str:
    rows = "\n".join(
        f"| `{p}_{c}` | {layer.name} | {layer.shape.describe()} | cob={layer.config.cob} wob={layer.config.wob} "
        f"({layer.source}) |"
        for c, layer in zip(c_names, layers, strict=True)
    )
    cc = f"{cross.TRIPLES[target.arch]}-gcc" if target.arch and target.arch != cross.host_arch() else "cc"
    first = f"{p}_{c_names[0]}"
    return f"""# directconv export for {target.machine}

Direct-convolution kernels generated by `directconv export` for machine `{target.machine}` (ISA {target.isa},
{lanes} fp32 lanes), with a small C API. Plain C11 with GCC vector extensions and OpenMP (gcc or clang).

| prefix | layer | shape | register block (config source) |
|---|---|---|---|
{rows}

## Build

```sh
make                      # {LIBRARY}.a and {LIBRARY}.so, CC={cc}
{cc} -O3 -fopenmp my_program.c -I. -L. -l:{LIBRARY}.a -o my_program
```

Without make: `{cc} {" ".join(OPT_FLAGS)} {" ".join(target.flags)} -c *.c`, then link the objects with
`-fopenmp`. Keep the flags: `{" ".join(target.flags)}` selects the instructions the kernels were generated for.

## Call

Activations live in the blocked layout `[N][ceil(C/{lanes})][H][W][{lanes}]` (channels past C zero); a layer's blocked
output is the next layer's blocked input. Weights are packed once per layer.

```c
#include "directconv.h"
float *pw = malloc({first}_packed_weights_floats() * sizeof(float));
float *pb = malloc({p.upper()}_{c_names[0].upper()}_BIAS_FLOATS * sizeof(float));
{first}_pack_weights(oihw, bias, pw, pb);               /* oihw: [C_o][C_i][kh][kw] */
{p}_nchw_to_blocked(x, xb, n, C_i, H, W, {p.upper()}_LANES);
{first}_run_blocked(xb, pw, pb, yb, n, 0, /*relu=*/1);  /* 0 threads: the tuned count */
{p}_blocked_to_nchw(yb, y, n, C_o, H_o, W_o, {p.upper()}_LANES);
```

`directconv.h` documents every function, each layer's shape and configuration; `manifest.json` records the
machine, configurations and the directconv version that produced them.
"""


def manifest(
    prefix: str, c_names: list[str], layers: list[ExportLayer], target: cross.Target, provenance: dict[str, Any]
) -> dict[str, Any]:
    from directconv.core.version import __version__

    return {
        "generator": "directconv export",
        "export_version": EXPORT_VERSION,
        "kernel_generator_version": codegen.GENERATOR_VERSION,
        "directconv_version": __version__,
        "machine": target.machine,
        "isa": target.isa,
        "arch": target.arch,
        "compiler_flags": list(OPT_FLAGS + target.flags),
        "prefix": prefix,
        **provenance,
        "layers": [
            {
                "name": layer.name,
                "c_name": f"{prefix}_{c}",
                "shape": layer.shape.to_dict(),
                "config": layer.config.to_dict(),
                "config_source": layer.source,
                "config_detail": layer.detail,
            }
            for c, layer in zip(c_names, layers, strict=True)
        ],
    }


def export_files(
    layers: list[ExportLayer], target: cross.Target, prefix: str = "dc", provenance: dict[str, Any] | None = None
) -> dict[str, str]:
    """File name -> text of an export of `layers` for `target` (see the module docstring).

    Raises ValueError for an invalid prefix, no layers, or a config whose ISA is not the target's.
    """
    check_prefix(prefix)
    if not layers:
        raise ValueError("an export needs at least one layer")
    for layer in layers:
        if layer.config.isa != target.isa:
            raise ValueError(
                f"layer {layer.name}: config isa {layer.config.isa!r} does not match machine {target.machine}, whose "
                f"isa is {target.isa!r}; export configurations chosen for this machine"
            )
    lanes = layers[0].config.lanes
    c_names = layer_c_names([layer.name for layer in layers])
    files = {
        "directconv.h": header_text(prefix, c_names, layers, target.machine, lanes),
        "directconv_common.c": common_text(prefix),
    }
    for c, layer in zip(c_names, layers, strict=True):
        files[f"layer_{c}.c"] = layer_text(prefix, c, layer)
    sources = [name for name in files if name.endswith(".c")]
    files["Makefile"] = makefile_text(target, sources)
    files["README.md"] = readme_text(prefix, c_names, layers, target, lanes)
    files["manifest.json"] = json.dumps(manifest(prefix, c_names, layers, target, provenance or {}), indent=1) + "\n"
    return files
