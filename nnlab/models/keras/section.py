"""The `keras_mlp` and `cnn` sections of params.yaml, and the cnn's presets: types and bounds
(values: params.yaml). Allowed names come from spec.py, which the builders use too."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

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


HOST_PORT = ("not host:port (e.g. node0.example.org:7070, with a port from 1 to 65534: the "
             "roll call takes the next one)")


def _is_host_port(value: str) -> bool:
    """`host:port` (`[::1]:port` for an IPv6 address): process 0's address as the other
    machines reach it. JAX's coordinator listens on the port, the roll call on the next one."""
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 1 <= int(port) < 65535 and " " not in host


def check_host_port(value: str, what: str) -> str:
    """`value`, or a ValueError naming `what` (`nnlab join --coordinator`)."""
    if not _is_host_port(value):
        raise ValueError(f"{what}={value!r}: {HOST_PORT}")
    return value


def _host_port(value: str | None) -> str | None:
    if value is not None and not _is_host_port(value):
        raise ValueError(HOST_PORT)
    return value


class KerasFields(TrainingFields):
    """What both Keras models add to the training fields: where and how they compute."""

    backend: Annotated[str, one_of(BACKENDS, "backend")]
    data_parallel: bool  # each batch split over every local device of the chosen kind
    mixed_precision: bool  # bfloat16 compute, float32 variables and logits
    # JAX processes (one a machine) training this model together (docs/devices.md)
    processes: int = Field(ge=1, le=1024)
    coordinator: Annotated[str | None, AfterValidator(_host_port)]  # process 0's host:port
    join_timeout: float = Field(gt=0, le=86_400)  # seconds to wait for a missing process

    @model_validator(mode="after")
    def _several_processes(self) -> KerasFields:
        if self.processes == 1:
            return self
        if self.backend != "jax":
            raise ValueError(f"processes={self.processes}: several processes train on JAX's "
                             f"distributed runtime only; set backend=jax, or processes=1")
        if self.coordinator is None:
            raise ValueError(f"processes={self.processes}: set coordinator to process 0's "
                             f"host:port, as the other machines reach it (e.g. "
                             f"node0.example.org:7070)")
        return self

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
