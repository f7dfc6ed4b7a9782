"""The ONNX graph runtime on blocked activations: load_onnx(path) -> Model.

read (parse and check the file) -> build (steps with shapes, refusals) -> fuse (into the convolutions' stores) ->
arena (one buffer plan) -> model (kernels, packed weights, run). ops holds the non-convolution operators.
"""

from __future__ import annotations

from directconv.graph.model import Model, conv_layers, load_onnx
from directconv.graph.read import OnnxModelError

__all__ = ["Model", "OnnxModelError", "conv_layers", "load_onnx"]
