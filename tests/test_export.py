"""`directconv export`: the exported folder builds with its Makefile and, driven from C through its API only (pack
weights, NCHW -> blocked, run, blocked -> NCHW), matches the reference; for the paper's Cortex-A57 it cross-compiles
with -Wall -Wextra -Werror and runs under qemu-aarch64; bad arguments end with exit status 2 and a clear message.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from directconv.cli.main import main
from directconv.core.shape import ConvShape, kernel_kind
from directconv.core.suite import get_layer
from directconv.kernels import cross
from directconv.kernels.compiler import CompilerNotFoundError
from directconv.kernels.reference import conv2d_reference, tolerance

# A suite layer (5x5, padding), a 1x1 layer (run as one long row), and an explicit shape with channel tails,
# stride 2 and padding.
EXPLICIT = ["--ci", "5", "--co", "12", "--h", "9", "--w", "11", "--kh", "3", "--kw", "3", "--stride", "2", "--pad", "1"]
EXPLICIT_SHAPE = ConvShape.from_args(5, 12, 9, 11, 3, 3, stride=2, padding=1)

# Runs one exported layer on raw float32 files through the public API only.
DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "directconv.h"

typedef struct {
    int ci, co, h, w, ho, wo, groups;
    size_t (*weights_floats)(void);
    void (*pack)(const float *, const float *, float *, float *);
    int (*run)(const float *, const float *, const float *, float *, int, int, int);
    size_t bias_floats;
} layer_t;

static const layer_t layers[] = {
%(table)s
};

static float *load(const char *path, size_t n)
{
    float *p = malloc(n * sizeof(float));
    FILE *f = fopen(path, "rb");
    if (!p || !f || fread(p, sizeof(float), n, f) != n) { fprintf(stderr, "cannot read %%zu floats of %%s\n", n, path); exit(2); }
    fclose(f);
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 9) { fprintf(stderr, "usage: driver LAYER X W B OUT BATCH THREADS RELU\n"); return 2; }
    const layer_t *L = &layers[atoi(argv[1])];
    int n = atoi(argv[6]), threads = atoi(argv[7]), relu = atoi(argv[8]);
    float *x = load(argv[2], (size_t)n * L->ci * L->h * L->w);
    float *w = load(argv[3], (size_t)L->co * (L->ci / L->groups) * %(kk)s);
    float *b = load(argv[4], (size_t)L->co);
    float *pw = malloc(L->weights_floats() * sizeof(float)), *pb = malloc(L->bias_floats * sizeof(float));
    float *xb = malloc(%(p)s_blocked_floats(n, L->ci, L->h, L->w, %(P)s_LANES) * sizeof(float));
    size_t out_floats = %(p)s_blocked_floats(n, L->co, L->ho, L->wo, %(P)s_LANES);
    float *yb = malloc(out_floats * sizeof(float));
    float *y = malloc((size_t)n * L->co * L->ho * L->wo * sizeof(float));
    for (size_t i = 0; i < out_floats; ++i) yb[i] = 0.0f / 0.0f;  /* NaN: an element never written cannot pass */
    L->pack(w, b, pw, pb);
    if (%(p)s_nchw_to_blocked(x, xb, n, L->ci, L->h, L->w, %(P)s_LANES)) return 3;
    if (L->run(xb, pw, pb, yb, n, threads, relu)) return 3;
    if (%(p)s_blocked_to_nchw(yb, y, n, L->co, L->ho, L->wo, %(P)s_LANES)) return 3;
    FILE *f = fopen(argv[5], "wb");
    size_t count = (size_t)n * L->co * L->ho * L->wo;
    if (!f || fwrite(y, sizeof(float), count, f) != count || fclose(f)) return 2;
    return 0;
}
"""


def export(out: Path, *args: str) -> dict:
    assert main(["export", *args, "--out", str(out)]) == 0
    return json.loads((out / "manifest.json").read_text())


def write_driver(folder: Path, manifest: dict, kk: str) -> Path:
    prefix = manifest["prefix"]
    rows = []
    for layer in manifest["layers"]:
        c = layer["c_name"]
        up = c.upper()
        rows.append(
            f"    {{{up}_CI, {up}_CO, {up}_H, {up}_W, {up}_HO, {up}_WO, {up}_GROUPS, {c}_packed_weights_floats, "
            f"{c}_pack_weights, {c}_run_blocked, {up}_BIAS_FLOATS}},"
        )
    path = folder / "driver.c"
    path.write_text(DRIVER % {"table": "\n".join(rows), "p": prefix, "P": prefix.upper(), "kk": kk})
    return path


def check_layer(
    run_prefix: tuple[str, ...],
    driver: Path,
    index: int,
    shape: ConvShape,
    tmp: Path,
    rng,
    batch: int = 2,
    threads: int = 2,
    relu: bool = True,
) -> None:
    x = rng.standard_normal((batch, shape.ci, shape.h, shape.w)).astype(np.float32)
    w = rng.standard_normal((shape.co, shape.cig, shape.kh, shape.kw)).astype(np.float32)
    b = rng.standard_normal(shape.co).astype(np.float32)
    files = {name: tmp / f"{name}{index}.f32" for name in ("x", "w", "b", "y")}
    for name, array in (("x", x), ("w", w), ("b", b)):
        array.astype("<f4").tofile(files[name])
    cmd = [
        *run_prefix,
        str(driver),
        str(index),
        *(str(files[n]) for n in ("x", "w", "b", "y")),
        str(batch),
        str(threads),
        str(int(relu)),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    got = np.fromfile(files["y"], dtype="<f4").reshape(batch, shape.co, shape.ho, shape.wo)
    pads = (shape.pt, shape.pb, shape.pl, shape.pr)
    want = conv2d_reference(
        x, w, b, stride=(shape.sh, shape.sw), padding=pads, dilation=(shape.dh, shape.dw), groups=shape.groups
    )
    if relu:
        want = np.maximum(want, 0.0)
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max()) / scale
    assert err <= tolerance(shape.cig, shape.kh, shape.kw), (shape.describe(), err)


def driver_with_kk(folder: Path, manifest: dict) -> Path:
    """The driver, with each layer's kh*kw (for the size of its OIHW weights) from the header's macros."""
    kks = ", ".join(f"{layer['c_name'].upper()}_KH * {layer['c_name'].upper()}_KW" for layer in manifest["layers"])
    path = write_driver(folder, manifest, "layer_kk[L - layers]")
    text = path.read_text().replace(
        "static const layer_t layers[]", f"static const int layer_kk[] = {{{kks}}};\nstatic const layer_t layers[]", 1
    )
    path.write_text(text)
    return path


@pytest.mark.compiler
def test_export_builds_and_matches_the_reference(tmp_path, rng):
    out = tmp_path / "export"
    manifest = export(
        out, "--layer", "googlenet:3a_5x5", "--layer", "resnet50:res2_1x1_256to64", *EXPLICIT, "--prefix", "net"
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "Makefile",
            "README.md",
            "manifest.json",
            "directconv.h",
            "directconv_common.c",
            "layer_googlenet_3a_5x5.c",
            "layer_resnet50_res2_1x1_256to64.c",
            "layer_shape2.c",
        ]
    )
    assert manifest["machine"] and manifest["kernel_generator_version"] >= 1 and len(manifest["layers"]) == 3
    cc = cross.find_target_compiler(None).path
    build = subprocess.run(
        ["make", "-C", str(out), f"CC={cc}", "CFLAGS=-Wall -Wextra -Werror"], capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr
    assert (out / "libdirectconv_export.a").is_file() and (out / "libdirectconv_export.so").is_file()
    driver = driver_with_kk(out, manifest)
    exe = tmp_path / "driver"
    link = subprocess.run(
        [
            cc,
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fopenmp",
            "-I",
            str(out),
            str(driver),
            str(out / "libdirectconv_export.a"),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
    )
    assert link.returncode == 0, link.stderr
    shapes = [get_layer("googlenet:3a_5x5").shape, get_layer("resnet50:res2_1x1_256to64").shape, EXPLICIT_SHAPE]
    for index, shape in enumerate(shapes):
        check_layer((), exe, index, shape, tmp_path, rng, batch=1 if index == 1 else 2)
    check_layer((), exe, 2, EXPLICIT_SHAPE, tmp_path, rng, threads=1, relu=False)


GROUPED_LAYERS = ("mobilenetv2:dw3x3_960", "resnext50:res2_3x3g32", "resnext50:res5_3x3g32", "deeplabv3:res5_3x3d2")
# Groups of 50 channels, not whole vectors of 8 or 16 lanes: the grouped-window kernel (with a channel tail on 16).
WINDOW = [
    "--ci",
    "200",
    "--co",
    "200",
    "--h",
    "9",
    "--w",
    "11",
    "--kh",
    "3",
    "--kw",
    "3",
    "--stride",
    "2",
    "--pad",
    "1",
    "--groups",
    "4",
]
WINDOW_SHAPE = ConvShape.from_args(200, 200, 9, 11, 3, 3, stride=2, padding=1, groups=4)


@pytest.mark.compiler
@pytest.mark.slow
def test_export_of_every_kernel_kind_builds_warning_free_and_matches_the_reference(tmp_path, rng):
    """Depthwise, grouped-packed, grouped, grouped-window and dilated layers: their packing in C, their kernels
    (whose NCHW entry carries the shared transposes) and the header's DC_LANES build under -Werror together."""
    out = tmp_path / "kinds"
    layers = [arg for name in GROUPED_LAYERS for arg in ("--layer", name)]
    manifest = export(out, *layers, *WINDOW, "--prefix", "kinds")
    cc = cross.find_target_compiler(None).path
    build = subprocess.run(
        ["make", "-C", str(out), f"CC={cc}", "CFLAGS=-Wall -Wextra -Werror"], capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr
    driver = driver_with_kk(out, manifest)
    exe = tmp_path / "driver"
    link = subprocess.run(
        [cc, "-O1", "-fopenmp", "-I", str(out), str(driver), str(out / "libdirectconv_export.a"), "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert link.returncode == 0, link.stderr
    shapes = [get_layer(name).shape for name in GROUPED_LAYERS] + [WINDOW_SHAPE]
    lanes = {"avx2": 8, "avx512": 16}[manifest["isa"]]
    kinds = {kernel_kind(s, lanes) for s in shapes}
    assert kinds == {"depthwise", "grouped-packed", "grouped", "grouped-window", "plain"}
    for index, shape in enumerate(shapes):
        check_layer((), exe, index, shape, tmp_path, rng, batch=1)


@pytest.mark.compiler
def test_export_for_cortex_a57_cross_compiles_and_runs_under_qemu(tmp_path, rng):
    try:
        cc = cross.find_target_compiler("aarch64").path
    except CompilerNotFoundError as exc:
        pytest.skip(f"needs gcc-aarch64-linux-gnu: apt-get install gcc-aarch64-linux-gnu ({exc})")
    out = tmp_path / "a57"
    manifest = export(out, "--machine", "cortex-a57", "--layer", "googlenet:3a_5x5", *EXPLICIT)
    assert manifest["machine"] == "cortex-a57" and manifest["isa"] == "neon"
    assert "-mcpu=cortex-a57" in (out / "Makefile").read_text()
    # The Makefile picks the cross compiler by itself.
    build = subprocess.run(["make", "-C", str(out), "CFLAGS=-Wall -Wextra -Werror"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    assert "aarch64-linux-gnu-gcc" in build.stdout
    qemu = cross.emulator("aarch64")
    if qemu is None:
        pytest.skip("cross-compiled cleanly; running it needs qemu-user: apt-get install qemu-user")
    exe = tmp_path / "driver-a57"
    link = subprocess.run(
        [
            cc,
            "-O1",
            "-static",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fopenmp",
            "-I",
            str(out),
            str(driver_with_kk(out, manifest)),
            str(out / "libdirectconv_export.a"),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
    )
    assert link.returncode == 0, link.stderr
    check_layer(qemu, exe, 1, EXPLICIT_SHAPE, tmp_path, rng)


def test_bad_prefix_is_refused(tmp_path, capsys):
    assert main(["export", "--layer", "googlenet:3a_5x5", "--out", str(tmp_path / "x"), "--prefix", "9bad"]) == 2
    assert "--prefix must be a C identifier" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_non_empty_out_is_refused_without_force(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["export", "--layer", "googlenet:3a_5x5", "--out", str(tmp_path), "--machine", "cortex-a57"]) == 2
    assert "is not empty" in capsys.readouterr().err
    # --force replaces only an earlier export, never a folder of other files.
    assert (
        main(["export", "--layer", "googlenet:3a_5x5", "--out", str(tmp_path), "--machine", "cortex-a57", "--force"])
        == 2
    )
    assert "holds no earlier export" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_force_replaces_an_earlier_export(tmp_path):
    out = tmp_path / "e"
    export(out, "--layer", "googlenet:3a_5x5", "--machine", "cortex-a57")
    assert main(["export", *EXPLICIT, "--machine", "cortex-a57", "--out", str(out)]) == 2
    manifest = export(out, *EXPLICIT, "--machine", "cortex-a57", "--force")
    assert [layer["c_name"] for layer in manifest["layers"]] == ["dc_shape0"]
    assert not (out / "layer_googlenet_3a_5x5.c").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["e"]  # no temporary folders left behind


def test_unknown_machine_is_refused(tmp_path, capsys):
    assert main(["export", "--layer", "googlenet:3a_5x5", "--out", str(tmp_path / "x"), "--machine", "nosuchcpu"]) == 2
    err = capsys.readouterr().err
    assert "directconv export: error:" in err and "nosuchcpu" in err
    assert not (tmp_path / "x").exists()


def test_makefile_and_manifest_carry_the_machine_flags():
    from directconv.kernels.export import ExportLayer, export_files
    from directconv.machines.loader import load_machine
    from directconv.model import predict

    machine = load_machine("cortex-a57")
    shape = EXPLICIT_SHAPE
    plan = predict(shape, machine)
    files = export_files([ExportLayer("x", shape, plan.config, "model")], cross.target_for(machine), "p")
    manifest = json.loads(files["manifest.json"])
    assert "-mcpu=cortex-a57" in manifest["compiler_flags"] and "-march=native" not in files["Makefile"]
    assert manifest["layers"][0]["config"] == plan.config.to_dict()
    with pytest.raises(ValueError, match="does not match machine"):
        export_files([ExportLayer("x", shape, plan.config, "model")], cross.target_for(load_machine("zen3")), "p")
