"""The search space: `--sample 'key=dist(args)'` parsed into Ranges checked against the params
schema, the same Ranges as Optuna distributions, and the fixed `--set` overrides."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel

from nnlab.core.schema import Params, ParamsError
from nnlab.params import MODEL_NAMES, schema, validate

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")


SIGNIFICANT_DIGITS = 4  # sampled floats: readable in tables, and exact through params.yaml


_SPEC = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Range:
    """Where one param is sampled from. `low`/`high` are inclusive; `values` is for choice."""

    key: str  # full params key, e.g. "numpy_dnn.learning_rate" or "seed"
    kind: str  # one of DISTRIBUTIONS
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()

    def __str__(self) -> str:
        # The same syntax `--sample` accepts, so a printed range can be pasted back.
        if self.kind == "choice":
            args = ",".join(yaml_scalar(value) for value in self.values)
        elif self.kind == "int":
            args = f"{int(self.low)},{int(self.high)}"
        else:
            args = f"{self.low:.{SIGNIFICANT_DIGITS}g},{self.high:.{SIGNIFICANT_DIGITS}g}"
        return f"{self.key}={self.kind}({args})"


def yaml_scalar(value: Any) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True, width=1 << 16)).strip().removesuffix(
        "\n..."
    ).strip()


def _number(text: str) -> float | int | None:
    # Python's own parsing, not YAML's: PyYAML reads "1e-4" (no dot) as a string.
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return None


def _choice_value(text: str) -> Any:
    number = _number(text.strip())
    if number is not None:
        return number
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text.strip()


def _split_args(text: str) -> list[str]:
    """Split on commas outside brackets, so `choice([16],[32,16])` has two values."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts]


def _keys(model: type[BaseModel], prefix: str) -> tuple[list[str], list[str]]:
    """(dotted keys of a schema's fields, nested sections followed; the list-of-sections
    fields, which are set whole)."""
    keys: list[str] = []
    whole: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")[0]
        elif get_origin(annotation) is list and any(
                isinstance(arg, type) and issubclass(arg, BaseModel)
                for arg in get_args(annotation)):
            whole.append(f"{prefix}{name}")
        else:
            keys.append(f"{prefix}{name}")
    return keys, whole


def param_keys(model: str) -> list[str]:
    """Params a sweep over `model` may sample or set: its own section's keys, plus `seed`.
    A list of sections (cnn.blocks) is one param, set whole in YAML flow style, e.g.
    `cnn.blocks=[{filters: 32, convs: 2}]` (`dvc exp run -S` takes it so): `-S` cannot
    address its items."""
    if model not in MODEL_NAMES:
        raise ParamsError(f"unknown model {model!r}; choose one of: {', '.join(MODEL_NAMES)}")
    keys, whole = _keys(schema(model), f"{model}.")
    # The model's own seed is `nnlab repeat`'s to vary: a sweep that samples it ranks noise.
    return ["seed", *(key for key in keys if key != f"{model}.seed"), *whole]


def resolve_key(name: str, model: str, what: str) -> str:
    """`learning_rate` -> `<model>.learning_rate`; dotted names must be known params too."""
    keys = param_keys(model)
    key = name if name in keys else f"{model}.{name}"
    if key not in keys:
        bare = ", ".join(item.removeprefix(f"{model}.") for item in keys)
        raise ParamsError(f"{what}: unknown param {name!r} for {model}; choose one of: {bare}")
    return key


def parse_spec(text: str, model: str) -> Range:
    """Parse one `--sample KEY=DIST(ARGS)`, e.g. `learning_rate=loguniform(1e-4,1e-1)`.

    DIST is uniform(low,high), loguniform(low,high) with 0 < low, int(low,high) (inclusive
    integers) or choice(a,b,...) (YAML scalars, e.g. choice(relu,tanh) or choice([16],[32])).

    Raises:
        ParamsError: one line naming the spec, what is wrong and what would work.
    """
    what = f"--sample {text!r}"
    match = _SPEC.match(text)
    if match is None:
        raise ParamsError(
            f"{what}: expected KEY=DIST(ARGS), e.g. 'learning_rate=loguniform(1e-4,1e-1)'"
        )
    name, kind, inner = match.groups()
    if kind not in DISTRIBUTIONS:
        raise ParamsError(
            f"{what}: unknown distribution {kind!r}; choose one of: {', '.join(DISTRIBUTIONS)}"
        )
    key = resolve_key(name, model, what)
    args = _split_args(inner)
    if kind == "choice":
        if args == [""]:
            raise ParamsError(f"{what}: choice needs at least one value, e.g. choice(relu,tanh)")
        return Range(key, kind, values=tuple(_choice_value(arg) for arg in args))
    if len(args) != 2:
        raise ParamsError(f"{what}: {kind} needs 2 bounds (low,high), got {len(args)}")
    bounds = [_number(arg) for arg in args]
    low, high = bounds
    if low is None or high is None or not all(map(math.isfinite, (low, high))):
        raise ParamsError(f"{what}: {kind} bounds must be finite numbers, got {inner!r}")
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise ParamsError(f"{what}: int bounds must be integers, got {inner!r}")
    if low >= high:
        raise ParamsError(f"{what}: low must be below high, got low={low}, high={high}")
    if kind == "loguniform" and low <= 0:
        raise ParamsError(f"{what}: loguniform needs 0 < low, got low={low}")
    return Range(key, kind, float(low), float(high))


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def parse_overrides(pairs: Sequence[str], model: str, flag: str = "--set") -> dict[str, Any]:
    """`--set KEY=VALUE` pairs (YAML values, bare keys mean `<model>.KEY`) as a dict."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ParamsError(f"{flag} {pair!r}: expected KEY=VALUE, e.g. {model}.epochs=5")
        overrides[resolve_key(name.strip(), model, f"{flag} {pair!r}")] = _choice_value(value)
    return overrides


def apply_overrides(raw: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the params mapping with dotted keys set, as `dvc exp run -S` would."""
    result: dict[str, Any] = json.loads(json.dumps(raw))
    for key, value in values.items():
        *parents, last = key.split(".")
        section = result
        for part in parents:
            section = section.setdefault(part, {})
        section[last] = value
    return result


def format_value(value: Any) -> str:
    """A sampled value as tables and messages show it: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.{SIGNIFICANT_DIGITS}g}"
    return yaml_scalar(value)


# Optuna's side of a Range. Choice values are stored as YAML text (Optuna's categorical values
# must be scalars, and `choice([16],[32,16])` holds lists); `decode` turns them back.

def distribution(item: Range) -> Any:
    """The Optuna distribution that samples `item`."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if item.kind == "choice":
        return CategoricalDistribution([yaml_scalar(value) for value in item.values])
    if item.kind == "int":
        return IntDistribution(int(item.low), int(item.high))
    return FloatDistribution(item.low, item.high, log=item.kind == "loguniform")


def from_distribution(key: str, dist: Any) -> Range:
    """The Range an Optuna distribution stands for (the inverse of `distribution`)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return Range(key, "choice", values=tuple(decode(value) for value in dist.choices))
    if isinstance(dist, IntDistribution):
        return Range(key, "int", float(dist.low), float(dist.high))
    return Range(key, "loguniform" if dist.log else "uniform", float(dist.low), float(dist.high))


def decode(value: Any) -> Any:
    """A sampled value as params.yaml holds it (choices come back from their YAML text)."""
    return _choice_value(value) if isinstance(value, str) else value


def suggest(trial: Any, ranges: Sequence[Range]) -> dict[str, Any]:
    """The trial's values for `ranges` (key -> value), floats rounded like `sample`'s."""
    values = {}
    for item in ranges:
        if item.kind == "choice":
            choices = [yaml_scalar(value) for value in item.values]
            values[item.key] = decode(trial.suggest_categorical(item.key, choices))
        elif item.kind == "int":
            values[item.key] = int(trial.suggest_int(item.key, int(item.low), int(item.high)))
        else:
            value = trial.suggest_float(item.key, item.low, item.high,
                                        log=item.kind == "loguniform")
            values[item.key] = min(max(_round(float(value)), item.low), item.high)
    return values


def check_bounds(raw: Mapping[str, Any], overrides: Mapping[str, Any],
                 ranges: Sequence[Range]) -> Params:
    """Every end of every range (each choice value) checked by the params schema, one param
    at a time, before any trial runs; returns the base params.

    Raises:
        ParamsError: names the range, the value and the schema's complaint.
    """
    for key in [*overrides, *(item.key for item in ranges)]:
        section: Any = raw
        for part in key.split("."):
            if not isinstance(section, Mapping) or part not in section:
                raise ParamsError(f"{key} is not in params.yaml, so `dvc exp run -S` cannot set "
                                  "it: add it there (with its default) and commit")
            section = section[part]
    base = validate(apply_overrides(raw, overrides))
    for item in ranges:
        ends = item.values if item.kind == "choice" else (
            (int(item.low), int(item.high)) if item.kind == "int" else (item.low, item.high))
        for value in ends:
            try:
                validate(apply_overrides(raw, {**overrides, item.key: value}))
            except ParamsError as error:
                raise ParamsError(f"--sample '{item}': {item.key}={format_value(value)} is "
                                  f"refused: {error}") from None
    return base
