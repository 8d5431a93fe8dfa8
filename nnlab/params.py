"""Typed schema for params.yaml: load, validate, and report bad values in one line.

Every stage calls `load_params()` before doing any work, so a typo in params.yaml (or in a
`dvc exp run -S ...`) fails fast with a message that names the key, the value and what is
allowed, instead of a traceback from deep inside NumPy or Keras.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nnlab.datasets import DATASETS

MODEL_NAMES = ("numpy_dnn", "keras_mlp", "cnn", "logreg")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
INITS = ("zeros", "random", "he", "xavier")
NUMPY_OPTIMIZERS = ("sgd", "momentum", "adam")
KERAS_OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")


class ParamsError(ValueError):
    """A value in params.yaml is missing, misspelled or out of range."""


class _Section(BaseModel):
    # extra="forbid": a misspelled key is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what}; choose one of: {', '.join(allowed)}")
    return value


class DataParams(_Section):
    dataset: str = "digits"
    source: str | None = None
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    image_size: int = Field(64, gt=0)
    grayscale: bool = False

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        return _one_of(value, tuple(DATASETS), "dataset")


class NumpyDnnParams(_Section):
    hidden_layers: list[int] = [128, 64]
    activation: str = "relu"
    init: str = "he"
    optimizer: str = "adam"
    learning_rate: float = Field(0.001, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    epsilon: float = Field(1e-8, gt=0)
    l2: float = Field(0.0, ge=0)
    batch_size: int | None = Field(32, gt=0)
    epochs: int = Field(40, gt=0)

    @field_validator("hidden_layers")
    @classmethod
    def _positive_units(cls, value: list[int]) -> list[int]:
        if any(units <= 0 for units in value):
            raise ValueError("every layer needs at least 1 unit")
        return value

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, value: str) -> str:
        return _one_of(value, ACTIVATIONS, "activation")

    @field_validator("init")
    @classmethod
    def _known_init(cls, value: str) -> str:
        return _one_of(value, INITS, "init")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _one_of(value, NUMPY_OPTIMIZERS, "optimizer")


class KerasMlpParams(_Section):
    hidden_units: list[int] = [128]
    activation: str = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)
    optimizer: str = "adam"
    learning_rate: float = Field(0.001, gt=0)
    batch_size: int = Field(32, gt=0)
    epochs: int = Field(30, gt=0)

    @field_validator("hidden_units")
    @classmethod
    def _positive_units(cls, value: list[int]) -> list[int]:
        if any(units <= 0 for units in value):
            raise ValueError("every layer needs at least 1 unit")
        return value

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, value: str) -> str:
        return _one_of(value, ACTIVATIONS, "activation")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _one_of(value, KERAS_OPTIMIZERS, "optimizer")


class ConvBlock(_Section):
    filters: int = Field(gt=0)
    convs: int = Field(1, gt=0)


class CnnParams(_Section):
    blocks: list[ConvBlock] = [ConvBlock(filters=32), ConvBlock(filters=64)]
    block_dropout: float = Field(0.25, ge=0, lt=1)
    dense_units: list[int] = [512]
    dense_dropout: float = Field(0.5, ge=0, lt=1)
    optimizer: str = "adam"
    learning_rate: float = Field(0.001, gt=0)
    batch_size: int = Field(32, gt=0)
    epochs: int = Field(30, gt=0)

    @field_validator("blocks")
    @classmethod
    def _at_least_one_block(cls, value: list[ConvBlock]) -> list[ConvBlock]:
        if not value:
            raise ValueError("needs at least one conv block, e.g. [{filters: 32}]")
        return value

    @field_validator("dense_units")
    @classmethod
    def _positive_units(cls, value: list[int]) -> list[int]:
        if any(units <= 0 for units in value):
            raise ValueError("every layer needs at least 1 unit")
        return value

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _one_of(value, KERAS_OPTIMIZERS, "optimizer")


class LogregParams(_Section):
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, gt=0)


class Params(_Section):
    seed: int = 42
    data: DataParams = DataParams()
    numpy_dnn: NumpyDnnParams = NumpyDnnParams()
    keras_mlp: KerasMlpParams = KerasMlpParams()
    cnn: CnnParams = CnnParams()
    logreg: LogregParams = LogregParams()

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

