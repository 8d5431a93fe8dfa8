"""What every params section's schema is built from: a strict base class, the shared field
types and bounds, the one-line error, and the validated file (`Params`).

Each section's schema lives with the code it configures (nnlab/data/section.py,
nnlab/models/<family>/section.py, ...); nnlab/params.py reads params.yaml and validates the
sections a stage asks for. Schemas hold types and bounds only: every value is in params.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from nnlab.core.activations import ACTIVATIONS


class ParamsError(ValueError):
    """A value in params.yaml is missing, misspelled or out of range."""


class Section(BaseModel):
    """Base of every params section. extra="forbid": a misspelled key is an error, never
    silently ignored; frozen: a stage cannot change what MLflow logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def environment(self) -> dict[str, str]:
        """Environment variables a process must have before it imports the section's code
        (Keras's backend: nnlab/models/keras/section.py). Most sections need none."""
        return {}


def one_of(allowed: tuple[str, ...], what: str) -> AfterValidator:
    """A validator that accepts only `allowed` and lists them when it refuses a value."""

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"unknown {what}; choose one of: {', '.join(allowed)}")
        return value

    return AfterValidator(check)


# Sane bounds: beyond them a value is a typo or a mistake, never an experiment.
MAX_LAYERS, MAX_UNITS = 64, 16384


def _positive_units(value: list[int]) -> list[int]:
    if len(value) > MAX_LAYERS or any(units > MAX_UNITS for units in value):
        raise ValueError(f"at most {MAX_LAYERS} layers of at most {MAX_UNITS} units each")
    if any(units <= 0 for units in value):
        raise ValueError("every layer needs at least 1 unit")
    return value


Units = Annotated[list[int], AfterValidator(_positive_units)]
Activation = Annotated[str, one_of(ACTIVATIONS, "activation")]
Probability = Annotated[float, Field(ge=0, lt=1)]
LearningRate = Annotated[float, Field(gt=0, le=10)]  # Adam diverges far below 10
Epochs = Annotated[int, Field(gt=0, le=100_000)]
BatchSize = Annotated[int, Field(gt=0, le=65_536)]
Patience = Annotated[int, Field(gt=0, le=10_000)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]
# Where a neural model trains: `auto` a GPU when one is usable, else the CPU; `gpu` fails in one
# line when there is none (docs/devices.md).
DEVICES = ("auto", "cpu", "gpu")
Device = Annotated[str, one_of(DEVICES, "device")]


class ConvBlock(Section):
    """One block of a convnet (cnn, numpy_cnn): `convs` 3x3 convolutions of `filters`."""

    filters: int = Field(gt=0, le=4096)
    convs: int = Field(gt=0, le=8)


def _one_to_eight_blocks(value: list[ConvBlock]) -> list[ConvBlock]:
    if not value or len(value) > 8:
        raise ValueError("needs 1 to 8 conv blocks, e.g. [{filters: 32, convs: 2}]")
    return value


ConvBlocks = Annotated[list[ConvBlock], AfterValidator(_one_to_eight_blocks)]
SectionT = TypeVar("SectionT", bound=BaseModel)

# The source tutorials' DeepConvNet ("Deep Learning from Scratch", ch. 8): conv-conv-pool x 3
# at 16/32/64 filters, Dense 50, dropout 0.5, He init, Adam. As a preset of cnn and numpy_cnn
# it replaces these keys, so MLflow logs the architecture that was really trained.
DEEP_CNN: dict[str, Any] = {
    "blocks": [ConvBlock(filters=16, convs=2), ConvBlock(filters=32, convs=2),
               ConvBlock(filters=64, convs=2)],
    "block_dropout": 0.0,
    "dense_units": [50],
    "dense_dropout": 0.5,
    "init": "he",
    "optimizer": "adam",
}


def with_preset(section: SectionT, presets: Mapping[str, Mapping[str, Any]]) -> SectionT:
    """`section` with its `preset`'s values over its own (a `model_validator` of cnn and
    numpy_cnn): the preset wins, so MLflow logs the architecture that was really trained."""
    preset = getattr(section, "preset", None)
    return section if preset is None else section.model_copy(update=dict(presets[preset]))


class ModelFields(Section):
    """What every model's section has: the seed of the model's own randomness (weight init,
    batch order, dropout, augmentation). null takes the top-level `seed`; a number changes
    this model alone and leaves the split as it is (`nnlab repeat` sets it)."""

    seed: Seed | None


class TrainingFields(ModelFields):
    """The fields of every model trained by epochs of mini-batches (numpy_dnn, numpy_cnn,
    keras_mlp, cnn). Each family adds its `optimizer` (its own names) and the rest."""

    learning_rate: LearningRate
    batch_size: BatchSize
    epochs: Epochs
    early_stopping_patience: Patience | None  # None: train every epoch
    device: Device


def describe(error: Mapping[str, Any], prefix: str = "") -> str:
    """One pydantic error as `key=value: what is allowed`, the key dotted from the top of
    params.yaml (`prefix` is the section's name)."""
    key = ".".join([*([prefix] if prefix else []), *(str(part) for part in error["loc"])])
    message = str(error["msg"]).removeprefix("Value error, ")
    if isinstance(error["input"], dict) and error["type"] == "value_error":
        return f"{key}.{message}" if key else message  # a check across keys: "key=value ..."
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (misspelled?); remove it or fix its name"
    if error["type"] == "missing":
        return f"{key}: required key is missing; params.yaml lists every key with its value"
    return f"{key}={error['input']!r}: {message}"


def flatten(section: BaseModel | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
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


@dataclass(frozen=True)
class Params:
    """params.yaml, validated: the top-level keys always, and the sections that were asked
    for (a stage asks for those its dvc.yaml entry declares, `nnlab check` for all)."""

    seed: int
    models: tuple[str, ...]
    sections: Mapping[str, BaseModel]

    def section(self, name: str) -> Any:
        """A validated section. Asking for one that was not loaded is a bug of the caller:
        DVC would not rerun it when that section changes."""
        if name not in self.sections:
            raise RuntimeError(f"params section {name!r} was not loaded: add it to the stage's "
                               "sections and to its `params:` in dvc.yaml")
        return self.sections[name]

    @property
    def data(self) -> Any:
        """The `data` section (nnlab.data.section.DataParams)."""
        return self.section("data")

    def model_params(self, model: str) -> Any:
        """The params section of one model, e.g. `params.model_params("cnn")`."""
        return self.section(model)

    def model_seed(self, model: str) -> int:
        """The seed of one model's own randomness: its section's `seed`, else the top-level
        one (which also seeds the split)."""
        own = getattr(self.model_params(model), "seed", None)
        return self.seed if own is None else int(own)

    def model_dump(self) -> dict[str, Any]:
        return {"seed": self.seed, "models": list(self.models),
                **{name: section.model_dump() for name, section in self.sections.items()}}
