"""A trial and a sweep's result, ranked by validation accuracy (never test), and the sweep's
errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nnlab.search.space import Range

RANK_METRIC = "val.accuracy"  # validation only: the test set is used once, in evaluate


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; its trials are stopped and its parent run marked KILLED."""


class SweepError(RuntimeError):
    """The sweep could not finish (every trial failed, the queue timed out, DVC refused)."""


@dataclass
class Trial:
    """One sampled set of params, run as one DVC experiment named `name`."""

    name: str
    round: int
    values: dict[str, Any]
    status: str = "queued"  # queued | running | success | failed
    metrics: dict[str, float] = field(default_factory=dict)  # validation metrics only
    run_id: str | None = None  # its MLflow run, found by the tag dvc.exp_name

    @property
    def score(self) -> float | None:
        return self.metrics.get(RANK_METRIC) if self.status == "success" else None


def rank(trials: Sequence[Trial]) -> list[Trial]:
    """Successful trials by validation accuracy (best first, ties by lower val loss), then
    every other trial (failed, or never finished) by name: those are never ranked."""
    scored = [trial for trial in trials if trial.score is not None]
    scored.sort(key=lambda t: (-(t.score or 0.0), t.metrics.get("val.loss", math.inf), t.name))
    rest = sorted((trial for trial in trials if trial.score is None), key=lambda t: t.name)
    return scored + rest


@dataclass
class SweepResult:
    sweep_id: str
    parent_run_id: str
    rounds: list[list[Trial]]
    ranges: list[list[Range]]  # ranges[i] sampled round i+1; the last one is the suggestion
