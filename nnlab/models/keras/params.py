"""The `keras_mlp` and `cnn` sections of params.yaml, and the cnn's presets: types and bounds
(values: params.yaml). Allowed names come from spec.py, which the builders use too."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from nnlab.core.schema import (
    Activation,
    BatchSize,
    ConvBlock,
    ConvBlocks,
    Epochs,
    LearningRate,
    Patience,
    Probability,
    Section,
    Units,
    one_of,
)
from nnlab.models.keras.spec import INITIALIZERS, OPTIMIZERS

KerasOptimizer = Annotated[str, one_of(tuple(OPTIMIZERS), "optimizer")]
KerasInit = Annotated[str, one_of(tuple(INITIALIZERS), "init")]  # glorot_uniform, he_normal


class Augment(Section):
    shift: float = Field(ge=0, le=0.5)  # random translation, fraction of height/width
    flip: bool  # random horizontal flips


class KerasMlpParams(Section):
    """Flatten -> [Dense -> (BN) -> activation -> (Dropout)] x L -> Dense(n_classes)."""

    hidden_units: Units
    activation: Activation
    init: KerasInit
    dropout: Probability
    batch_norm: bool
    augment: Augment
    optimizer: KerasOptimizer
    learning_rate: LearningRate
    batch_size: BatchSize
    epochs: Epochs
    early_stopping_patience: Patience | None  # None: train every epoch


# The source tutorials' DeepConvNet ("Deep Learning from Scratch", ch. 8): conv-conv-pool x 3
# at 16/32/64 filters, Dense 50, dropout 0.5, He init, Adam. It replaces these keys.
DEEP_CNN: dict[str, Any] = {
    "blocks": [ConvBlock(filters=16, convs=2), ConvBlock(filters=32, convs=2),
               ConvBlock(filters=64, convs=2)],
    "block_dropout": 0.0,
    "dense_units": [50],
    "dense_dropout": 0.5,
    "init": "he",
    "optimizer": "adam",
}
PRESETS = {"deep": DEEP_CNN}


class CnnParams(Section):
    """[Conv3x3 x convs -> MaxPool -> Dropout] per block -> Dense -> Dense(n_classes)."""

    preset: Annotated[str, one_of(tuple(PRESETS), "preset")] | None
    blocks: ConvBlocks
    block_dropout: Probability
    dense_units: Units
    dense_dropout: Probability
    init: KerasInit
    augment: Augment
    optimizer: KerasOptimizer
    learning_rate: LearningRate
    batch_size: BatchSize
    epochs: Epochs
    early_stopping_patience: Patience | None  # None: train every epoch

    @model_validator(mode="after")
    def _apply_preset(self) -> CnnParams:
        # The preset's values win, so MLflow logs the architecture that was really trained.
        if self.preset is None:
            return self
        return self.model_copy(update=PRESETS[self.preset])
