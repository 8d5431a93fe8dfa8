"""The `keras_mlp` and `cnn` sections of params.yaml, and the cnn's presets: types and bounds
(values: params.yaml). Allowed names come from spec.py, which the builders use too."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from nnlab.core.schema import (
    DEEP_CNN,
    Activation,
    ConvBlocks,
    Probability,
    Section,
    TrainingFields,
    Units,
    one_of,
    with_preset,
)
from nnlab.models.keras.spec import BACKENDS, INITIALIZERS, OPTIMIZERS

KerasOptimizer = Annotated[str, one_of(tuple(OPTIMIZERS), "optimizer")]
KerasInit = Annotated[str, one_of(tuple(INITIALIZERS), "init")]  # glorot_uniform, he_normal


class Augment(Section):
    shift: float = Field(ge=0, le=0.5)  # random translation, fraction of height/width
    flip: bool  # random horizontal flips


class KerasFields(TrainingFields):
    """What both Keras models add to the training fields: where and how they compute."""

    backend: Annotated[str, one_of(BACKENDS, "backend")]
    data_parallel: bool  # each batch split over every local device of the chosen kind
    mixed_precision: bool  # bfloat16 compute, float32 variables and logits

    def environment(self) -> dict[str, str]:
        """Keras's backend; for `device: cpu`, no GPU visible to the backend (JAX and
        TensorFlow would otherwise claim a GPU's memory as they start)."""
        cpu_only = {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "-1"}
        return {"KERAS_BACKEND": self.backend, **(cpu_only if self.device == "cpu" else {})}


class KerasMlpParams(KerasFields):
    """Flatten -> [Dense -> (BN) -> activation -> (Dropout)] x L -> Dense(n_classes)."""

    hidden_units: Units
    activation: Activation
    init: KerasInit
    dropout: Probability
    batch_norm: bool
    augment: Augment
    optimizer: KerasOptimizer


# The source tutorials' DeepConvNet (nnlab/core/schema.py): numpy_cnn has the same preset.
CNN_PRESETS = {"deep": DEEP_CNN}


class CnnParams(KerasFields):
    """[Conv3x3 x convs -> MaxPool -> Dropout] per block -> Dense -> Dense(n_classes)."""

    preset: Annotated[str, one_of(tuple(CNN_PRESETS), "preset")] | None
    blocks: ConvBlocks
    block_dropout: Probability
    dense_units: Units
    dense_dropout: Probability
    init: KerasInit
    augment: Augment
    optimizer: KerasOptimizer

    @model_validator(mode="after")
    def _apply_preset(self) -> CnnParams:
        return with_preset(self, CNN_PRESETS)
