"""numpy_dnn and numpy_cnn as ONNX graphs, built layer by layer from the trained weights:
our from-scratch networks, runnable by onnxruntime, a browser or a phone.

Each layer maps to the ONNX op it computes (Dense -> MatMul + Add, Conv2D -> Conv, MaxPool2D
-> MaxPool, BatchNorm -> BatchNormalization, the activations, Softmax). ONNX convolves
channels first, the networks channels last: the graph transposes to (N, C, H, W) before the
first convolution and back before Flatten, so Flatten's order, and the next Dense's weights,
stay the network's. Padding is explicit, computed for the fixed input size as the layers do
(`_pads`: "same" puts the odd pixel after). Dropout is the identity at inference: no node.
"""

from __future__ import annotations

import numpy as np
import onnx

from nnlab.handoff.onnx_export.graph import Graph
from nnlab.models.numpy.conv import BatchNorm2D, Conv2D, Flatten, MaxPool2D, _pads
from nnlab.models.numpy.layers import (
    BatchNorm,
    Dense,
    Dropout,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Tanh,
)
from nnlab.models.numpy.network import Network

NCHW, NHWC = (0, 3, 1, 2), (0, 2, 3, 1)
ELEMENTWISE = {ReLU: "Relu", Tanh: "Tanh", Sigmoid: "Sigmoid"}


class _Builder:
    """Walks the layers, tracking the value's layout ("nhwc", "nchw" or "flat") and its
    spatial size (H, W), which explicit pads need."""

    def __init__(self, graph: Graph, input_shape: tuple[int, int, int], flat: bool) -> None:
        self.graph = graph
        self.height, self.width = input_shape[:2]
        self.layout = "nhwc"
        if flat:  # numpy_dnn: flattened pixels (N, H*W*C) in the network's (channels-last) order
            graph.apply("Flatten", axis=1)
            self.layout = "flat"

    def to(self, layout: str) -> None:
        if self.layout == layout:
            return
        if layout == "nchw":
            self.graph.apply("Transpose", perm=NCHW)
        elif self.layout == "nchw":
            self.graph.apply("Transpose", perm=NHWC)
        self.layout = layout

    def add(self, layer: Layer) -> None:
        graph = self.graph
        if isinstance(layer, Dropout):
            return
        if type(layer) in ELEMENTWISE:
            graph.apply(ELEMENTWISE[type(layer)])
        elif isinstance(layer, LeakyReLU):
            graph.apply("LeakyRelu", alpha=float(layer.slope))
        elif isinstance(layer, Dense):
            graph.apply("MatMul", graph.const(layer.params["W"], "W"))
            if "b" in layer.params:  # none before a batch norm
                graph.apply("Add", graph.const(layer.params["b"], "b"))
        elif isinstance(layer, BatchNorm):
            self.to("nchw" if isinstance(layer, BatchNorm2D) else self.layout)
            graph.apply("BatchNormalization", graph.const(layer.params["gamma"], "gamma"),
                        graph.const(layer.params["beta"], "beta"),
                        graph.const(layer.state["running_mean"], "mean"),
                        graph.const(layer.state["running_var"], "var"),
                        epsilon=float(layer.epsilon))
        elif isinstance(layer, Conv2D):
            self._conv(layer)
        elif isinstance(layer, MaxPool2D):
            self._window("MaxPool", layer.size, layer.size, layer.padding)
        elif isinstance(layer, Flatten):
            self.to("nhwc")
            graph.apply("Flatten", axis=1)
            self.layout = "flat"
        else:
            raise ValueError(f"no ONNX op for the layer {type(layer).__name__}")

    def _conv(self, layer: Conv2D) -> None:
        W = layer.params["W"]  # (kh, kw, C, F) -> ONNX's (F, C, kh, kw)
        inputs = [self.graph.const(np.ascontiguousarray(W.transpose(3, 2, 0, 1)), "kernel")]
        if "b" in layer.params:
            inputs.append(self.graph.const(layer.params["b"], "bias"))
        self._window("Conv", W.shape[0], layer.stride, layer.padding, *inputs,
                     kernel_width=W.shape[1])

    def _window(self, op_type: str, kernel: int, stride: int, padding: str | int, *inputs: str,
                kernel_width: int | None = None) -> None:
        self.to("nchw")
        out_h, top, bottom = _pads(self.height, kernel, stride, padding)
        out_w, left, right = _pads(self.width, kernel_width or kernel, stride, padding)
        attributes = {"strides": [stride, stride], "pads": [top, left, bottom, right]}
        if op_type == "MaxPool":
            attributes["kernel_shape"] = [kernel, kernel]
        self.graph.apply(op_type, *inputs, **attributes)
        self.height, self.width = out_h, out_w


def network_to_onnx(network: Network, input_shape: tuple[int, int, int], *, flat: bool,
                    name: str) -> onnx.ModelProto:
    """The network on uint8 images (N, H, W, C): pixels / 255, flattened first if `flat`
    (numpy_dnn), the layers, then softmax (or, with one sigmoid unit for 2 classes, the
    columns (1 - p, p) as `predict_proba` gives them)."""
    graph = Graph(input_shape)
    graph.apply("Div", graph.const(np.array(255, np.float32), "scale"))
    builder = _Builder(graph, input_shape, flat)
    for layer in network.layers:
        builder.add(layer)
    if network.n_classes == 2:  # softmax over (0, z) = (1 - sigmoid(z), sigmoid(z))
        zeros = graph.op("Sub", graph.value, graph.value)
        graph.value = graph.op("Concat", zeros, graph.value, axis=1)
    graph.apply("Softmax", axis=1)
    return graph.model(network.n_classes, name)
