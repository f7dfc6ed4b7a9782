"""The names of the corpus models (directconv.bench.corpus), importable without onnx: command-line help lists them."""

from __future__ import annotations

# The nine reference networks onnx ships as light backend test models (onnx/backend/test/data/light).
LIGHT_NAMES = (
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
)
# Built here as torchvision defines them.
BUILT_NAMES = ("mobilenetv2", "resnext50")
CORPUS_NAMES = LIGHT_NAMES + BUILT_NAMES
