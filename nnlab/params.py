"""params.yaml: read it, validate the top-level keys and the sections asked for, and report
bad values in one line.

A stage validates only the sections its dvc.yaml entry declares (`load_params(sections=...)`),
so it imports only their schemas: train@numpy_dnn never loads the Keras schema, and a change
to one model's code reruns only that model's stages. `nnlab check` validates every section.
The top level is always checked: `seed`, `models`, and no unknown section.

Every section's schema lives with the code it configures (nnlab/core/catalog.py: SECTIONS).
They hold types and bounds only; params.yaml holds every value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from nnlab.core.catalog import MODEL_NAMES, SECTIONS, load
from nnlab.core.schema import Params, ParamsError, Section, Seed, describe

TOP_LEVEL = ("seed", "models")


class _TopLevel(Section):
    seed: Seed
    models: tuple[str, ...]


def schema(section: str) -> type[BaseModel]:
    """The schema class of one section (its module imported now)."""
    model: type[BaseModel] = load(SECTIONS[section])
    return model


def _errors(error: ValidationError, prefix: str = "") -> list[str]:
    return [describe(item, prefix) for item in error.errors()]


def _top_level(raw: Mapping[str, Any]) -> tuple[_TopLevel | None, list[str]]:
    problems = [f"{key}: unknown section (misspelled?); params.yaml has: "
                f"{', '.join([*TOP_LEVEL, *SECTIONS])}"
                for key in raw if key not in TOP_LEVEL and key not in SECTIONS]
    try:
        top = _TopLevel.model_validate({key: raw[key] for key in TOP_LEVEL if key in raw})
    except ValidationError as error:
        return None, problems + _errors(error)
    if sorted(top.models) != sorted(MODEL_NAMES):
        problems.append(f"models={list(top.models)!r}: list every registered model once: "
                        f"{', '.join(MODEL_NAMES)} (the report compares them all; "
                        "`dvc repro train@cnn` runs just one)")
    return top, problems


def validate(raw: Any, sections: Iterable[str] | None = None) -> Params:
    """Validate a params mapping (as read from params.yaml): the top level, and `sections`
    (None: every section).

    Raises:
        ParamsError: one line, every bad value in it, each naming key, value and what is
            allowed.
    """
    if not isinstance(raw, dict):
        raise ParamsError(f"params must be a mapping of sections, got {type(raw).__name__}")
    names = list(SECTIONS) if sections is None else list(dict.fromkeys(sections))
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise ParamsError(f"unknown params section(s) {', '.join(unknown)}; sections are: "
                          f"{', '.join(SECTIONS)}")
    top, problems = _top_level(raw)
    validated: dict[str, BaseModel] = {}
    for name in names:
        if name not in raw:
            problems.append(f"{name}: required section is missing; params.yaml lists every "
                            "section with its values")
            continue
        try:
            validated[name] = schema(name).model_validate(raw[name])
        except ValidationError as error:
            problems += _errors(error, name)
    if problems or top is None:
        raise ParamsError("; ".join(problems))
    return Params(seed=top.seed, models=top.models, sections=validated)


def read(path: str | Path = "params.yaml") -> Any:
    """params.yaml as plain data, or a ParamsError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found; run from the project root")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None


def load_params(path: str | Path = "params.yaml",
                sections: Iterable[str] | None = None) -> Params:
    """Read and validate params.yaml: the top level, and `sections` (None: all of them)."""
    return validate(read(path), sections)


__all__ = ["MODEL_NAMES", "SECTIONS", "Params", "ParamsError", "load_params", "read", "schema",
           "validate"]
