"""The `numpy_dnn` and `numpy_cnn` sections of params.yaml: types and bounds (values:
params.yaml), and numpy_cnn's `deep` preset.

The names it accepts (activations, inits, optimizers, schedules) come from the engine's own
registries, so the schema can never accept a name the code does not know.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from nnlab.core.schema import (
    DEEP_CNN,
    Activation,
    BatchSize,
    ConvBlocks,
    Epochs,
    Probability,
    TrainingFields,
    Units,
    one_of,
    with_preset,
)
from nnlab.models.numpy.network import INITS
from nnlab.models.numpy.optimizers import LR_SCHEDULES, OPTIMIZERS


class NumpyTrainingFields(TrainingFields):
    """What both NumPy networks add to the shared training fields: numpy_dnn's optimizers
    with their constants, and random shifts of the training images."""

    optimizer: Annotated[str, one_of(tuple(OPTIMIZERS), "optimizer")]
    momentum: Probability
    beta1: Probability
    beta2: Probability
    epsilon: float = Field(gt=0, le=1)
    augment_shift: float = Field(ge=0, le=0.5)  # random shifts, as cnn's augment.shift
    augment_subpixel: bool  # shifts by fractions of a pixel, bilinear (Keras's)


class NumpyDnnParams(NumpyTrainingFields):
    """[LINEAR -> (BN) -> ACT -> (DROPOUT)] x L -> LINEAR -> SOFTMAX, trained from scratch."""

    hidden_layers: Units
    activation: Activation
    init: Annotated[str, one_of(INITS, "init")]
    learning_rate_decay: Annotated[str, one_of(tuple(LR_SCHEDULES), "learning_rate_decay")] | None
    decay_rate: float = Field(gt=0, le=100)
    decay_epochs: Epochs
    l2: float = Field(ge=0, le=10)
    dropout: Probability
    batch_norm: bool
    batch_size: BatchSize | None  # type: ignore[assignment]  # None: full-batch descent

    @model_validator(mode="after")
    def _step_decay_shrinks(self) -> NumpyDnnParams:
        if self.learning_rate_decay == "step" and not self.decay_rate < 1:
            raise ValueError(
                f"decay_rate={self.decay_rate!r}: step decay multiplies the learning rate by "
                "decay_rate every decay_epochs, so it must be in (0, 1)"
            )
        return self


# The source tutorials' DeepConvNet (nnlab/core/schema.py; nnlab/models/numpy/convnet.py
# builds it layer for layer), without batch norm, as the tutorial trains it.
CNN_PRESETS = {"deep": {**DEEP_CNN, "batch_norm": False}}


class NumpyCnnParams(NumpyTrainingFields):
    """[Conv3x3 x convs -> (BN) -> ReLU -> MaxPool -> Dropout] per block -> Dense -> out, from
    scratch in NumPy: the Keras cnn's params, with numpy_dnn's optimizers."""

    preset: Annotated[str, one_of(tuple(CNN_PRESETS), "preset")] | None
    blocks: ConvBlocks
    block_dropout: Probability
    dense_units: Units
    dense_dropout: Probability
    init: Annotated[str, one_of(INITS, "init")]
    batch_norm: bool

    @model_validator(mode="after")
    def _apply_preset(self) -> NumpyCnnParams:
        return with_preset(self, CNN_PRESETS)
