"""What `nnlab repeat` will run, decided before anything runs: the seeds, each configuration
of the model (its `-S` values over params.yaml) and the digest that names its repeats. Every
bad input is refused here, in one line."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnlab.core.schema import ParamsError
from nnlab.params import MODEL_NAMES, read, validate
from nnlab.search import dvc
from nnlab.search.space import apply_overrides, format_value, parse_overrides

MAX_SEEDS = 100  # each seed is one training: beyond this a typo, never an experiment
MAX_WORKERS = 16


@dataclass(frozen=True)
class Config:
    """One configuration of the model: its `-S` values over params.yaml, and the digest that
    names its repeats."""

    label: str
    overrides: dict[str, Any]
    digest: str

    def experiment(self, seed: int) -> str:
        return f"rep-{self.digest}-s{seed}"


@dataclass(frozen=True)
class RepeatPlan:
    model: str
    dataset: str
    seeds: list[int]
    configs: list[Config]
    workers: int


def make_plan(model: str, seeds: int, sets: list[str], against: list[str] | None,
              workers: int, root: Path) -> RepeatPlan:
    """Every bad input refused in one line before anything runs.

    Raises:
        ParamsError: an unknown model, a seed count or worker count out of range, a `-S` key
            outside M's section or a bad value.
    """
    if model not in MODEL_NAMES:
        raise ParamsError(f"--model {model!r}: unknown model; choose one of: "
                          f"{', '.join(MODEL_NAMES)}")
    if not 2 <= seeds <= MAX_SEEDS:
        raise ParamsError(f"--seeds {seeds}: choose 2 to {MAX_SEEDS} seeds (each is one "
                          "training; a spread needs two)")
    if not 1 <= workers <= MAX_WORKERS:
        raise ParamsError(f"--workers {workers}: choose 1 to {MAX_WORKERS}")
    raw = read(root / "params.yaml")
    top = validate(raw, [model, "data"])
    if against is not None and not against:
        raise ParamsError("--against: give the second configuration's -S key=value, "
                          f"e.g. --against -S {model}.learning_rate=0.003")
    chosen = [_overrides(model, pairs, raw) for pairs in (sets, *([against] if against else []))]
    tree = _uncommitted(root)
    configs = [_config(model, overrides, raw, tree) for overrides in chosen]
    if len(configs) == 2 and configs[1].digest == configs[0].digest:
        raise ParamsError("--against: the second configuration is the first one; change a "
                          "value with -S")
    return RepeatPlan(model, str(raw["data"]["dataset"]), [top.seed + index for index in
                                                      range(seeds)], configs, workers)


def _overrides(model: str, pairs: list[str], raw: dict[str, Any]) -> dict[str, Any]:
    """`-S` pairs as dotted keys of M's section, each value validated."""
    for pair in pairs:
        key = pair.partition("=")[0].strip()
        if "." in key and not key.startswith(f"{model}."):
            raise ParamsError(f"-S {pair}: outside {model}'s section; a repeat changes {model} "
                              "alone (the data and the other models stay as they are)")
        if key in ("seed", f"{model}.seed"):
            raise ParamsError(f"-S {pair}: the seeds are --seeds' to set (the top-level seed "
                              "and up); the top-level seed would also change the split")
    overrides = parse_overrides(pairs, model, flag="-S")
    validate(apply_overrides(raw, overrides), [model])  # a bad value: one line, nothing started
    return overrides


def _config(model: str, overrides: dict[str, Any], raw: dict[str, Any], tree: str) -> Config:
    changed = apply_overrides(raw, overrides)
    section = {key: value for key, value in changed[model].items() if key != "seed"}
    digest = hashlib.sha256(json.dumps(
        {"model": model, "section": section, "data": changed["data"], "seed": changed["seed"],
         "tree": tree}, sort_keys=True, default=str).encode()).hexdigest()[:10]
    label = ", ".join(f"{key.removeprefix(model + '.')}={format_value(value)}"
                      for key, value in overrides.items()) or "params.yaml"
    return Config(label, overrides, digest)


def _uncommitted(root: Path) -> str:
    """A digest of the commit and of the code's uncommitted changes (an experiment carries
    them). params.yaml is covered by the sections that matter, and dvc.lock and the reports
    are results: another model's experiment in the workspace, or a repeat's own report, must
    not make the repeats look new. The commit makes another commit's repeats another group in
    MLflow."""
    commit = dvc.baseline_rev(root)  # a git repo with a commit, or one line saying so
    result = subprocess.run(["git", "diff", "HEAD", "--", ".", ":(exclude)reports",
                             ":(exclude)params.yaml", ":(exclude)dvc.lock"], cwd=root,
                            capture_output=True, timeout=60)
    return hashlib.sha256(commit.encode() + b"\0" + result.stdout).hexdigest()[:16]
