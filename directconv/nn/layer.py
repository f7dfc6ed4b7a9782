"""directconv.Conv2d: one convolution layer for production, set up once and then only run.

Construction checks and keeps the weights; the first call on an input size (or `input_size=` at construction)
picks the configuration (tuned, nearest tuned, or the model's: see directconv.tuner.select), packs the weights for it
and compiles or loads its kernel. Every later call on that size runs the kernel and nothing else. A layer fed
several input sizes keeps one binding per size.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from directconv.core import checks
from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape, normalize_dilation, normalize_groups, normalize_padding, normalize_stride
from directconv.kernels import layout
from directconv.nn import api

ACTIVATIONS = (None, "relu")


@dataclass(frozen=True)
class Binding:
    """What a Conv2d runs for one input size: the shape, the chosen configuration, why, and the packed weights."""

    shape: ConvShape
    config: KernelConfig
    source: str  # "tuned", "nearest" or "model" (directconv.tuner.select)
    reason: str
    weights: api.PackedWeights


class Conv2d:
    """A 2-D convolution layer (cross-correlation, OIHW weights) with optional fused bias and ReLU.

    Call it on NCHW float32 arrays (converted in and out on each call) or on BlockedTensors (no conversion: the
    output is blocked too, ready for the next layer). `threads=None` uses every CPU this process may run on.
    `config=` forces a configuration instead of the three-source choice (source "given").
    """

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | tuple[int, int, int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        activation: str | None = None,
        threads: int | None = None,
        input_size: tuple[int, int] | None = None,
        config: KernelConfig | None = None,
    ) -> None:
        w, b = api._check_weights(weight, bias)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be None or 'relu', got {activation!r}")
        checks.optional_threads(threads)
        if config is not None and not isinstance(config, KernelConfig):
            raise TypeError(f"config must be a KernelConfig or None, got {type(config).__name__}")
        self.stride = normalize_stride(stride)
        self.padding = normalize_padding(padding)
        self.dilation = normalize_dilation(dilation)
        self.groups = normalize_groups(groups)
        if w.shape[0] % self.groups:
            raise ValueError(f"groups={self.groups} must divide C_o={w.shape[0]} (weight OIHW shape {w.shape})")
        self.activation = activation
        self.threads = threads or api.available_threads()
        # A copy until the first binding packs it: the layer must not change when the caller reuses its arrays.
        # After that the packed weights are the only copy kept (other input sizes repack from them), so a
        # network's resident memory is its packed weights, not twice its weights.
        self._weight: np.ndarray | None = np.array(w, dtype=np.float32, order="C", copy=True)
        self._shape_oihw = tuple(int(v) for v in w.shape)
        self._bias = None if b is None else np.array(b, dtype=np.float32, copy=True)
        self._config = config
        self._bindings: dict[tuple[int, int], Binding] = {}
        self._last: Binding | None = None
        self._lock = threading.Lock()
        if input_size is not None:
            if not (isinstance(input_size, (tuple, list)) and len(input_size) == 2):
                raise TypeError(f"input_size must be a pair (height, width), got {input_size!r}")
            self.bind(int(input_size[0]), int(input_size[1]))

    # ------------------------------------------------------------------------------------------ description

    @property
    def in_channels(self) -> int:
        return self._shape_oihw[1] * self.groups  # the weight holds C_i / groups inputs per filter

    @property
    def out_channels(self) -> int:
        return self._shape_oihw[0]

    @property
    def kernel_size(self) -> tuple[int, int]:
        return self._shape_oihw[2], self._shape_oihw[3]

    def shape_for(self, height: int, width: int) -> ConvShape:
        """The layer's ConvShape on an input of height x width (raises ValueError if the filter does not fit)."""
        kh, kw = self.kernel_size
        return ConvShape.from_args(
            self.in_channels,
            self.out_channels,
            height,
            width,
            kh,
            kw,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        s = self.shape_for(height, width)
        return s.ho, s.wo

    def _binding(self) -> Binding:
        if self._last is None:
            raise RuntimeError("this Conv2d has not seen an input size yet: call it once or pass input_size=(h, w)")
        return self._last

    @property
    def config(self) -> KernelConfig:
        """The configuration of the most recently bound input size."""
        return self._binding().config

    @property
    def source(self) -> str:
        """Where that configuration came from: "tuned", "nearest", "model" (or "given")."""
        return self._binding().source

    @property
    def reason(self) -> str:
        """Why, in words: the store entry, the neighbour and both estimates, or the model's reasons."""
        return self._binding().reason

    @property
    def bindings(self) -> dict[tuple[int, int], Binding]:
        return dict(self._bindings)

    def __repr__(self) -> str:
        kh, kw = self.kernel_size
        bound = f", {self.source} config cob={self.config.cob} wob={self.config.wob}" if self._last else ""
        return (
            f"Conv2d({self.in_channels}->{self.out_channels}, {kh}x{kw}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"activation={self.activation!r}, threads={self.threads}{bound})"
        )

    # ------------------------------------------------------------------------------------------ setup

    def bind(self, height: int, width: int) -> Binding:
        """Choose, pack and compile (or load) for inputs of height x width; later calls on that size only run."""
        found = self._bindings.get((height, width))
        if found is not None:
            return found
        with self._lock:
            found = self._bindings.get((height, width))
            if found is None:
                found = self._make_binding(self.shape_for(height, width))
                self._bindings[(height, width)] = found
            self._last = found
        return found

    def _make_binding(self, shape: ConvShape) -> Binding:
        if self._config is not None:
            config, source, reason = self._config.replace(threads=self.threads), "given", "passed as config="
        else:
            from directconv.tuner.select import choose_config  # the host and the store load on first use

            choice = choose_config(shape, self.threads)
            config, source, reason = choice.config, choice.source, choice.detail
        if self._weight is not None:
            weight = self._weight
        else:
            first = next(iter(self._bindings.values())).weights
            weight = layout.unpack_weights(
                first.data, self.out_channels, self.in_channels, self.groups, lanes=first.config.lanes
            )
        packed = api.pack_weights(
            weight,
            self._bias,
            input_size=(shape.h, shape.w),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            config=config,
        )
        self._weight = None  # called under self._lock; the binding is stored by the caller right after
        return Binding(shape, packed.config, source, reason, packed)

    # ------------------------------------------------------------------------------------------ running

    def forward_blocked(self, x: api.BlockedTensor, *, out: api.BlockedTensor | None = None) -> api.BlockedTensor:
        """Blocked in, blocked out; with `out=` nothing is allocated. Thread-safe."""
        if not isinstance(x, api.BlockedTensor):
            raise TypeError(f"x must be a BlockedTensor (see directconv.to_blocked), got {type(x).__name__}")
        b = self.bind(x.height, x.width)
        return api.conv2d_blocked(x, b.weights, relu=self.activation == "relu", out=out)

    def __call__(self, x: Any, *, out: api.BlockedTensor | None = None) -> Any:
        """NCHW float32 ndarray -> NCHW ndarray; BlockedTensor -> BlockedTensor (see forward_blocked)."""
        if isinstance(x, api.BlockedTensor):
            return self.forward_blocked(x, out=out)
        if out is not None:
            raise TypeError("out= is for blocked calls; an NCHW call returns a new array")
        x = api._require_float32("x", x, 4, "NCHW")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"channel mismatch: x has C_i={x.shape[1]} channels (NCHW shape {x.shape}), this layer "
                f"expects {self.in_channels}"
            )
        b = self.bind(int(x.shape[2]), int(x.shape[3]))
        return api.conv2d_nchw(x, b.weights, relu=self.activation == "relu")
