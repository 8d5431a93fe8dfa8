"""The `numpy_dnn` section of params.yaml: types and bounds (values: params.yaml).

The names it accepts (activations, inits, optimizers, schedules) come from the engine's own
registries, so the schema can never accept a name the code does not know.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from nnlab.core.schema import (
    Activation,
    BatchSize,
    Epochs,
    LearningRate,
    Patience,
    Probability,
    Section,
    Units,
    one_of,
)
from nnlab.models.numpy_dnn.network import INITS
from nnlab.models.numpy_dnn.optimizers import LR_SCHEDULES, OPTIMIZERS


class NumpyDnnParams(Section):
    """[LINEAR -> (BN) -> ACT -> (DROPOUT)] x L -> LINEAR -> SOFTMAX, trained from scratch."""

    hidden_layers: Units
    activation: Activation
    init: Annotated[str, one_of(INITS, "init")]
    optimizer: Annotated[str, one_of(tuple(OPTIMIZERS), "optimizer")]
    learning_rate: LearningRate
    momentum: Probability
    beta1: Probability
    beta2: Probability
    epsilon: float = Field(gt=0, le=1)
    learning_rate_decay: Annotated[str, one_of(tuple(LR_SCHEDULES), "learning_rate_decay")] | None
    decay_rate: float = Field(gt=0, le=100)
    decay_epochs: Epochs
    l2: float = Field(ge=0, le=10)
    dropout: Probability
    batch_norm: bool
    augment_shift: float = Field(ge=0, le=0.5)  # random shifts, as cnn's augment.shift
    batch_size: BatchSize | None  # None: full-batch gradient descent
    epochs: Epochs
    early_stopping_patience: Patience | None  # None: train every epoch

    @model_validator(mode="after")
    def _step_decay_shrinks(self) -> NumpyDnnParams:
        if self.learning_rate_decay == "step" and not self.decay_rate < 1:
            raise ValueError(
                f"decay_rate={self.decay_rate!r}: step decay multiplies the learning rate by "
                "decay_rate every decay_epochs, so it must be in (0, 1)"
            )
        return self
