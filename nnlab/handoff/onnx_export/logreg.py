"""logreg as ONNX, through skl2onnx, behind the uint8 `images` input (pixels / 255,
flattened: what `to_features` does)."""

from __future__ import annotations

from typing import Any

import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

from nnlab.handoff.onnx_export.graph import OPSET, with_image_input


def logreg_to_onnx(model: Any, input_shape: tuple[int, int, int], n_classes: int) -> Any:
    """`model`: the trained LogisticRegression; an onnx.ModelProto."""
    features = int(np.prod(input_shape))
    exported = convert_sklearn(model, initial_types=[("features", FloatTensorType(
        [None, features]))], options={id(model): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3})
    return with_image_input(exported, input_shape, n_classes, "probabilities", scale=True,
                            flatten=True)
