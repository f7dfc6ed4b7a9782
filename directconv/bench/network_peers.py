"""The peers of a whole network: the same conv+ReLU+max-pool stack in torch (two layouts) and onnxruntime.

Each holds the problem's weights and zero biases and is set up as its users would for inference: torch as an
nn.Sequential in eval mode called under no_grad, with in-place ReLUs as torchvision builds them; onnxruntime on
an ONNX graph of Conv, Relu and MaxPool nodes with the weights as initializers (so its optimizer may fuse and
prepack them), input and output bound once. Thread settings and the ONNX model stamping come from peers.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from directconv.bench.base import Impl, Prepared
from directconv.bench.network import NetworkProblem
from directconv.bench.peers import onnx_model_bytes, onnx_session, set_torch_threads
from directconv.nn.networks import ConvStep


def torch_model(problem: NetworkProblem) -> Any:
    """torch.nn.Sequential of the network, holding copies of the problem's weights, in eval mode."""
    import torch
    from torch import nn

    layers: list[Any] = []
    pairs = iter(problem.weights)
    for step in problem.network.steps:
        if isinstance(step, ConvStep):
            w, b = next(pairs)
            conv = nn.Conv2d(step.ci, step.co, step.kernel, stride=step.stride, padding=step.pad, bias=True)
            conv.load_state_dict({"weight": torch.from_numpy(w), "bias": torch.from_numpy(b)})  # copies
            layers.append(conv)
            if step.relu:
                layers.append(nn.ReLU(inplace=True))
        else:
            layers.append(nn.MaxPool2d(step.kernel, stride=step.stride, padding=step.pad))
    return nn.Sequential(*layers).eval()


def _prepare_torch(problem: NetworkProblem, threads: int, channels_last: bool) -> Prepared:
    import torch

    restore = set_torch_threads(threads)
    model = torch_model(problem)
    x = torch.from_numpy(problem.x.copy())
    if channels_last:
        # Weights and input converted once, outside the timing, as directconv-blocked gets its input blocked.
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def call() -> Any:
        with torch.no_grad():
            return model(x)

    def to_nchw(y: Any) -> np.ndarray:
        return y.contiguous().numpy().copy()

    return Prepared(call, to_nchw, note=f"torch {torch.__version__}", close=restore)


def prepare_torch_nchw(problem: NetworkProblem, threads: int) -> Prepared:
    return _prepare_torch(problem, threads, channels_last=False)


def prepare_torch_channels_last(problem: NetworkProblem, threads: int) -> Prepared:
    return _prepare_torch(problem, threads, channels_last=True)


def onnx_chain_model(problem: NetworkProblem) -> bytes:
    """The network as an ONNX graph: Conv (weights and biases as initializers), Relu and MaxPool nodes."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []
    pairs = iter(problem.weights)
    current = "x"
    for i, step in enumerate(problem.network.steps):
        out = f"t{i}"
        if isinstance(step, ConvStep):
            w, b = next(pairs)
            initializers += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
            k, s, p = step.kernel, step.stride, step.pad
            conv_out = f"{out}_conv" if step.relu else out
            nodes.append(
                helper.make_node(
                    "Conv",
                    [current, f"w{i}", f"b{i}"],
                    [conv_out],
                    name=step.name,
                    kernel_shape=[k, k],
                    strides=[s, s],
                    pads=[p, p, p, p],
                )
            )
            if step.relu:
                nodes.append(helper.make_node("Relu", [conv_out], [out], name=f"{step.name}_relu"))
        else:
            k, s, p = step.kernel, step.stride, step.pad
            nodes.append(
                helper.make_node(
                    "MaxPool", [current], [out], name=step.name, kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p]
                )
            )
        current = out
    n = problem.network
    graph = helper.make_graph(
        nodes,
        f"directconv_bench_{n.name}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n.channels, n.size, n.size])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, *n.activations()[-1]])],
        initializer=initializers,
    )
    return onnx_model_bytes(graph)


def prepare_onnxruntime(problem: NetworkProblem, threads: int) -> Prepared:
    import onnxruntime as ort

    session = onnx_session(onnx_chain_model(problem), threads)
    c, h, w = problem.network.activations()[-1]
    y = np.empty((1, c, h, w), dtype=np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input("x", problem.x)
    binding.bind_output(session.get_outputs()[0].name, "cpu", 0, np.float32, list(y.shape), y.ctypes.data)

    def call() -> np.ndarray:
        session.run_with_iobinding(binding)
        return y

    return Prepared(call, np.array, note=f"onnxruntime {ort.__version__}")


IMPLS: tuple[Impl[NetworkProblem], ...] = (
    Impl(
        "torch-nchw",
        "torch.nn.Sequential of the same stack, NCHW, eval mode under no_grad",
        prepare_torch_nchw,
        requires=("torch",),
    ),
    Impl(
        "torch-channels_last",
        "the same torch model and input converted to channels_last once (outside the timing)",
        prepare_torch_channels_last,
        requires=("torch",),
    ),
    Impl(
        "onnxruntime",
        "onnxruntime on an ONNX graph of Conv/Relu/MaxPool nodes (CPUExecutionProvider, all optimizations, "
        "I/O bound once)",
        prepare_onnxruntime,
        requires=("onnx", "onnxruntime"),
    ),
)
