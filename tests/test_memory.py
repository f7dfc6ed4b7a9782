"""Zero memory overhead: the blocked convolution allocates its output and nothing else."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import directconv as dc
from directconv.kernels import runtime

pytestmark = pytest.mark.compiler

# Python-level bookkeeping of one call (the BlockedTensor wrapper, cffi buffer objects) is a few hundred bytes.
BOOKKEEPING_BYTES = 16 * 1024


@pytest.mark.parametrize("geometry", [(64, 64, 28, 28, 3, 3, 1), (96, 40, 20, 20, 1, 1, 0), (3, 32, 40, 40, 7, 7, 3)])
def test_blocked_convolution_allocates_only_its_output(rng, geometry, random_layer, peak_bytes):
    ci, co, h, w, kh, kw, pad = geometry
    x, wt, b = random_layer(rng, 1, ci, co, h, w, kh, kw)
    packed = dc.pack_weights(wt, b, input_size=(h, w), padding=pad, threads=2)
    xb = dc.to_blocked(x)
    out = dc.conv2d_blocked(xb, packed)  # warm: kernel loaded, thread pool started
    output_bytes = out.data.nbytes
    input_bytes = xb.data.nbytes
    assert output_bytes > BOOKKEEPING_BYTES  # else the bounds below would prove nothing

    with_out = peak_bytes(lambda: dc.conv2d_blocked(xb, packed, out=out))
    assert with_out < BOOKKEEPING_BYTES, f"{with_out} bytes allocated with a preallocated output"

    fresh = peak_bytes(lambda: dc.conv2d_blocked(xb, packed))
    assert output_bytes <= fresh < output_bytes + BOOKKEEPING_BYTES
    # For contrast, im2col would need kh*kw times the input (for 1x1 stride-1 layers, at least no less).
    assert fresh < output_bytes + min(input_bytes, kh * kw * input_bytes)


def test_compiled_kernel_calls_no_allocator():
    """The kernel library imports no heap or stack allocator: nothing in C can allocate per call."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("needs nm (binutils) to list the kernel library's imported symbols")
    shape = dc.ConvShape.from_args(19, 37, 11, 13, 3, 3, 1, 1)
    kernel = runtime.load(dc.default_config(shape, threads=2), shape)
    undefined = subprocess.run(
        [nm, "-D", "--undefined-only", str(kernel.path)], capture_output=True, text=True, check=True
    )
    imported = {line.split()[-1].split("@")[0] for line in undefined.stdout.splitlines() if line.strip()}
    allocators = {
        "malloc",
        "calloc",
        "realloc",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "mmap",
        "alloca",
        "__libc_malloc",
        "free",
    }
    assert imported & allocators == set(), imported
    assert any(name.startswith("GOMP_") for name in imported)  # the listing is real: OpenMP is imported
