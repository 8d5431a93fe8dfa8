"""What every exported ONNX model shares: one input `images`, uint8 (N, H, W, C) pixels
0..255 as the workspace stores them, and one output `probabilities`, float32 (N, n_classes),
the columns of `predict_proba`. A client sends the same pixels it sends `nnlab serve`.

`Graph` builds a graph node by node (the NumPy networks, numpy_nets.py);
`with_image_input` puts the uint8 input in front of a graph an exporter made (Keras's,
skl2onnx's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

INPUT, OUTPUT = "images", "probabilities"
OPSET = 17  # onnxruntime 1.16+ runs it; Keras's exporter and skl2onnx both write it


def _image_input(input_shape: tuple[int, int, int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["N", *input_shape])


def _output(n_classes: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", n_classes])


class Graph:
    """Nodes appended in order, each output named after its op; constants as initializers.
    Starts from the uint8 input cast to float32 (N, H, W, C), 0..255."""

    def __init__(self, input_shape: tuple[int, int, int]) -> None:
        self.input_shape = input_shape
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self.value = self.op("Cast", INPUT, to=TensorProto.FLOAT)

    def const(self, array: NDArray[Any], name: str = "const") -> str:
        unique = f"{name}_{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(np.asarray(array), unique))
        return unique

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        output = f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def apply(self, op_type: str, *constants: str, **attributes: Any) -> None:
        """self.value = op_type(self.value, *constants)."""
        self.value = self.op(op_type, self.value, *constants, **attributes)

    def model(self, n_classes: int, name: str) -> onnx.ModelProto:
        """The graph ending in self.value, which must be (N, n_classes) probabilities."""
        self.nodes.append(helper.make_node("Identity", [self.value], [OUTPUT]))
        graph = helper.make_graph(self.nodes, name, [_image_input(self.input_shape)],
                                  [_output(n_classes)], self.constants)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="nnlab")
        onnx.checker.check_model(model, full_check=True)
        return model


def with_image_input(model: onnx.ModelProto, input_shape: tuple[int, int, int], n_classes: int,
                     probabilities: str, *, scale: bool, flatten: bool) -> onnx.ModelProto:
    """`model` (one float32 input) fed from the uint8 `images` input: cast, divided by 255
    if `scale`, flattened to (N, H*W*C) if `flatten`; its output `probabilities` kept, as
    OUTPUT, and its other outputs dropped."""
    graph = model.graph
    (old_input,) = [value for value in graph.input
                    if value.name not in {init.name for init in graph.initializer}]
    scale_name = "nnlab_255"
    steps: list[tuple[str, list[str], dict[str, Any]]] = [
        ("Cast", [], {"to": TensorProto.FLOAT})]
    if scale:
        steps.append(("Div", [scale_name], {}))
    if flatten:
        steps.append(("Flatten", [], {"axis": 1}))
    front, value = [], INPUT
    for index, (op_type, extra, attributes) in enumerate(steps):
        output = f"nnlab_pre_{index}"
        front.append(helper.make_node(op_type, [value, *extra], [output], **attributes))
        value = output
    front.append(helper.make_node("Identity", [value], [old_input.name]))
    nodes = [*front, *graph.node]
    if probabilities != OUTPUT:
        nodes.append(helper.make_node("Identity", [probabilities], [OUTPUT]))
    constants = [*graph.initializer]
    if scale:
        constants.append(numpy_helper.from_array(np.array(255, np.float32), scale_name))
    new_graph = helper.make_graph(nodes, graph.name, [_image_input(input_shape)],
                                  [_output(n_classes)], constants)
    new = helper.make_model(new_graph, opset_imports=model.opset_import,
                            producer_name="nnlab")
    new.ir_version = model.ir_version
    onnx.checker.check_model(new, full_check=True)
    return new
