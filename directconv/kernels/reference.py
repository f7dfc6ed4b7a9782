"""The numpy reference convolution: the answer every kernel is checked against.

It accumulates in float64 so that its own rounding error is negligible next to the float32 kernels it judges.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from directconv.core.shape import ConvShape, normalize_dilation, normalize_groups, normalize_padding, normalize_stride


def conv2d_reference(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | tuple[int, int, int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """NCHW input, OIHW weights of shape (C_o, C_i / groups, kh, kw), float64 result of shape (N, C_o, H_o, W_o)."""
    sh, sw = normalize_stride(stride)
    pt, pb, pl, pr = normalize_padding(padding)
    dh, dw = normalize_dilation(dilation)
    g = normalize_groups(groups)
    x64 = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    w64 = np.asarray(w, dtype=np.float64)
    n, ci = x64.shape[:2]
    co, cig, kh, kw = w64.shape
    if ci != cig * g or co % g:
        raise ValueError(f"weights {w64.shape} do not fit {ci} input channels in {g} groups")
    # windows: (N, C_i, H_o', W_o', (kh-1)*dh+1, (kw-1)*dw+1) before striding; the taps are every dh-th, dw-th
    windows = sliding_window_view(x64, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]
    ho, wo = windows.shape[2:4]
    grouped_windows = windows.reshape(n, g, cig, ho, wo, kh, kw)
    grouped_w = w64.reshape(g, co // g, cig, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", grouped_windows, grouped_w, optimize=True).reshape(n, co, ho, wo)
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return out


def reference_for(shape: ConvShape, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """conv2d_reference with the stride, padding, dilation and groups of `shape`."""
    return conv2d_reference(x, w, bias, **shape.conv_arguments())


def tolerance(ci: int, kh: int, kw: int) -> float:
    """Relative error bound (to the largest |output|) for an fp32 kernel against the float64 reference.

    A float32 sum of K = C_i*kh*kw products has a worst-case relative error of about K * 2^-24 of the sum of
    magnitudes; for random data of mean zero it grows like sqrt(K) * 2^-24 of the output scale. We allow
    32 * sqrt(K) * 2^-24 relative to the largest |output| (about 1.3e-4 for a 512-channel 3x3 layer), with a floor
    of 1e-6. A dropped or duplicated tap moves an output by about one product, i.e. by roughly 1/sqrt(K) of the
    output scale: 10 to 100 times more than this bound on every layer we test, so such bugs cannot hide in it.
    """
    k = ci * kh * kw
    return max(1e-6, 32.0 * (k**0.5) * 2.0**-24)
