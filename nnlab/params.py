"""Typed schema for params.yaml: load, validate, and report bad values in one line.

Every stage calls `load_params()` before doing any work, so a typo in params.yaml (or in a
`dvc exp run -S ...`) fails fast with a message that names the key, the value and what is
allowed, instead of a traceback from deep inside NumPy or Keras.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from nnlab import keras_spec
from nnlab.datasets import DATASETS
from nnlab.datasets.planar import SHAPES as PLANAR_SHAPES
from nnlab.models import MODELS
from nnlab.numpy_dnn.layers import ACTIVATIONS as NUMPY_ACTIVATIONS
from nnlab.numpy_dnn.network import INITS as NUMPY_INITS
from nnlab.numpy_dnn.optimizers import LR_SCHEDULES, OPTIMIZERS

# Allowed names come from the registries that implement them (pure NumPy, cheap to import),
# so the schema can never accept a name the code does not know.
MODEL_NAMES = tuple(MODELS)
ACTIVATIONS = tuple(NUMPY_ACTIVATIONS)
INITS = NUMPY_INITS
NUMPY_OPTIMIZERS = tuple(OPTIMIZERS)
NUMPY_LR_SCHEDULES = tuple(LR_SCHEDULES)
KERAS_OPTIMIZERS = tuple(keras_spec.OPTIMIZERS)
KERAS_INITS = tuple(keras_spec.INITIALIZERS)  # Keras's glorot_uniform (its default), he_normal


class ParamsError(ValueError):
    """A value in params.yaml is missing, misspelled or out of range."""


class _Section(BaseModel):
    # extra="forbid": a misspelled key is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_of(allowed: tuple[str, ...], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"unknown {what}; choose one of: {', '.join(allowed)}")
        return value

    return AfterValidator(check)


def _positive_units(value: list[int]) -> list[int]:
    if len(value) > MAX_LAYERS or any(units > MAX_UNITS for units in value):
        raise ValueError(f"at most {MAX_LAYERS} layers of at most {MAX_UNITS} units each")
    if any(units <= 0 for units in value):
        raise ValueError("every layer needs at least 1 unit")
    return value


def _known_dataset(value: str) -> str:
    if value not in DATASETS:
        raise ValueError(f"unknown dataset; choose one of: {', '.join(DATASETS)}")
    return value


# Reusable field types. Defaults below match params.yaml (a test keeps them in sync).
Units = Annotated[list[int], AfterValidator(_positive_units)]
Activation = Annotated[str, _one_of(ACTIVATIONS, "activation")]
# Sane bounds: beyond them a value is a typo or a mistake, never an experiment.
MAX_LAYERS, MAX_UNITS = 64, 16384
Probability = Annotated[float, Field(ge=0, lt=1)]
LearningRate = Annotated[float, Field(gt=0, le=10)]  # Adam diverges far below 10
Epochs = Annotated[int, Field(gt=0, le=100_000)]
BatchSize = Annotated[int, Field(gt=0, le=65_536)]
Patience = Annotated[int, Field(gt=0, le=10_000)]


class DataParams(_Section):
    dataset: Annotated[str, AfterValidator(_known_dataset)] = "digits"
    source: str | None = None
    test_fraction: float = Field(0.2, gt=0, le=0.5)
    val_fraction: float = Field(0.2, gt=0, le=0.5)
    image_size: int = Field(64, ge=4, le=1024)  # prepare also checks the memory it needs
    grayscale: bool = False
    planar_shape: Annotated[str, _one_of(PLANAR_SHAPES, "planar_shape")] = "flower"
    planar_samples: int = Field(400, ge=20, le=1_000_000)


class NumpyDnnParams(_Section):
    hidden_layers: Units = [256, 128]
    activation: Activation = "relu"
    init: Annotated[str, _one_of(INITS, "init")] = "he"
    optimizer: Annotated[str, _one_of(NUMPY_OPTIMIZERS, "optimizer")] = "adam"
    learning_rate: LearningRate = 0.001
    momentum: Probability = 0.9
    beta1: Probability = 0.9
    beta2: Probability = 0.999
    epsilon: float = Field(1e-7, gt=0, le=1)
    learning_rate_decay: (
        Annotated[str, _one_of(NUMPY_LR_SCHEDULES, "learning_rate_decay")] | None
    ) = None
    decay_rate: float = Field(0.5, gt=0, le=100)
    decay_epochs: Epochs = 10
    l2: float = Field(0.0, ge=0, le=10)
    dropout: Probability = 0.15
    batch_norm: bool = False
    augment_shift: float = Field(0.06, ge=0, le=0.5)  # random shifts, as cnn's augment.shift
    batch_size: BatchSize | None = 64  # None: full-batch gradient descent
    epochs: Epochs = 60
    early_stopping_patience: Patience | None = 10  # None: train every epoch

    @model_validator(mode="after")
    def _step_decay_shrinks(self) -> NumpyDnnParams:
        if self.learning_rate_decay == "step" and not self.decay_rate < 1:
            raise ValueError(
                f"decay_rate={self.decay_rate!r}: step decay multiplies the learning rate by "
                "decay_rate every decay_epochs, so it must be in (0, 1)"
            )
        return self


KerasOptimizer = Annotated[str, _one_of(KERAS_OPTIMIZERS, "optimizer")]
KerasInit = Annotated[str, _one_of(KERAS_INITS, "init")]


class Augment(_Section):
    shift: float = Field(0.0, ge=0, le=0.5)  # random translation, fraction of height/width
    flip: bool = False  # random horizontal flips


class KerasMlpParams(_Section):
    hidden_units: Units = [256]
    activation: Activation = "relu"
    init: KerasInit = "xavier"
    dropout: Probability = 0.45
    batch_norm: bool = False
    augment: Augment = Augment(shift=0.06)
    optimizer: KerasOptimizer = "adam"
    learning_rate: LearningRate = 0.001
    batch_size: BatchSize = 64
    epochs: Epochs = 40
    early_stopping_patience: Patience | None = 8  # None: train every epoch


class ConvBlock(_Section):
    filters: int = Field(gt=0, le=4096)
    convs: int = Field(1, gt=0, le=8)


def _at_least_one_block(value: list[ConvBlock]) -> list[ConvBlock]:
    if not value or len(value) > 8:
        raise ValueError("needs 1 to 8 conv blocks, e.g. [{filters: 32}]")
    return value


# The seeds' DeepConvNet ("Deep Learning from Scratch", ch. 8): conv-conv-pool x 3 at
# 16/32/64 filters, Dense 50, dropout 0.5, He init, Adam. It replaces these keys.
DEEP_CNN = {
    "blocks": [ConvBlock(filters=16, convs=2), ConvBlock(filters=32, convs=2),
               ConvBlock(filters=64, convs=2)],
    "block_dropout": 0.0,
    "dense_units": [50],
    "dense_dropout": 0.5,
    "init": "he",
    "optimizer": "adam",
}
PRESETS = {"deep": DEEP_CNN}


class CnnParams(_Section):
    preset: Annotated[str, _one_of(tuple(PRESETS), "preset")] | None = None
    blocks: Annotated[list[ConvBlock], AfterValidator(_at_least_one_block)] = [
        ConvBlock(filters=32, convs=2),
        ConvBlock(filters=64, convs=2),
    ]
    block_dropout: Probability = 0.25
    dense_units: Units = [512]
    dense_dropout: Probability = 0.5
    init: KerasInit = "xavier"
    augment: Augment = Augment(shift=0.1)
    optimizer: KerasOptimizer = "adam"
    learning_rate: LearningRate = 0.0015
    batch_size: BatchSize = 32
    epochs: Epochs = 25
    early_stopping_patience: Patience | None = 8  # None: train every epoch

    @model_validator(mode="after")
    def _apply_preset(self) -> CnnParams:
        # The preset's values win, so MLflow logs the architecture that was really trained.
        if self.preset is None:
            return self
        return self.model_copy(update=PRESETS[self.preset])


class LogregParams(_Section):
    C: float = Field(1.0, gt=0, le=1e6)
    max_iter: int = Field(2000, gt=0, le=1_000_000)


BaselineName = Literal["svc", "mlp"]  # nnlab/baselines.py's BASELINES


class BaselinesParams(_Section):
    models: tuple[BaselineName, ...] = ("svc", "mlp")
    max_train_samples: int = Field(10_000, gt=0, le=1_000_000)  # an SVC's fit is quadratic


def _every_model(value: tuple[str, ...]) -> tuple[str, ...]:
    if sorted(value) != sorted(MODEL_NAMES):
        raise ValueError(f"list every registered model once: {', '.join(MODEL_NAMES)} (the "
                         "report compares them all; `dvc repro train@cnn` runs just one)")
    return value


class Params(_Section):
    seed: int = Field(42, ge=0, lt=2**32)
    models: Annotated[tuple[str, ...], AfterValidator(_every_model)] = MODEL_NAMES
    data: DataParams = DataParams()
    numpy_dnn: NumpyDnnParams = NumpyDnnParams()
    keras_mlp: KerasMlpParams = KerasMlpParams()
    cnn: CnnParams = CnnParams()
    logreg: LogregParams = LogregParams()
    baselines: BaselinesParams = BaselinesParams()

    def model_params(self, model: str) -> BaseModel:
        """The params section of one model, e.g. `params.model_params("cnn")`."""
        _check_model(model)
        section: BaseModel = getattr(self, model)
        return section


def _check_model(model: str) -> None:
    if model not in MODEL_NAMES:
        raise ParamsError(
            f"unknown model {model!r}; choose one of: {', '.join(MODEL_NAMES)}"
        )


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if isinstance(error["input"], dict) and error["type"] == "value_error":
        return f"{key}.{message}"  # a check across keys: the message starts with "key=value"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (misspelled?); remove it or fix its name"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}={error['input']!r}: {message}"


def validate(raw: dict[str, Any]) -> Params:
    """Validate a params mapping (as read from params.yaml).

    Raises:
        ParamsError: one line per bad value, each naming key, value and what is allowed.
    """
    if not isinstance(raw, dict):
        raise ParamsError(f"params must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        lines = [_describe(item) for item in error.errors()]  # type: ignore[arg-type]
        raise ParamsError("; ".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found; run from the project root")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    return validate(raw)


def flatten(section: BaseModel | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested params to dotted keys, e.g. {"blocks.0.filters": 32}."""
    data = section.model_dump() if isinstance(section, BaseModel) else section
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for index, item in enumerate(value):
                flat.update(flatten(item, f"{name}.{index}."))
        else:
            flat[name] = value
    return flat


__all__ = [
    "MODEL_NAMES",
    "Params",
    "ParamsError",
    "flatten",
    "load_params",
    "validate",
]

