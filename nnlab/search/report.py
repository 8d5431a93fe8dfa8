"""What a sweep prints and records: the ranked table, why trials failed, and the summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnlab.search.dvc import run_dvc
from nnlab.search.space import format_value
from nnlab.search.trials import RANK_METRIC, SweepError, SweepResult, Trial, rank


def format_table(trials: Sequence[Trial], keys: Sequence[str]) -> str:
    """A text table of ranked trials: rank, name, validation metrics and sampled values."""
    header = ["rank", "trial", "val.accuracy", "val.loss", *keys]
    rows = []
    for position, trial in enumerate(rank(trials), start=1):
        if trial.score is not None:
            first = [str(position), trial.name, f"{trial.score:.4f}",
                     f"{trial.metrics.get('val.loss', math.nan):.4f}"]
        else:
            first = ["-", trial.name, trial.status, ""]
        rows.append(first + [format_value(trial.values[key]) for key in keys])
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def failure_summary(root: Path, trials: Sequence[Trial]) -> str:
    """Why every trial failed: the commonest error line in their `dvc queue logs`, and where
    to read one such log."""
    causes: dict[str, list[str]] = {}
    for trial in trials:
        try:
            log = run_dvc(["queue", "logs", trial.name], root, timeout=120)
        except SweepError:
            log = ""
        lines = [line.strip() for line in log.splitlines()]
        # A stage's own one-line error names the cause; DVC's "ERROR: failed to reproduce"
        # after it only names the stage.
        ours = [line for line in lines if ": error: " in line]
        theirs = [line for line in lines if line.startswith(("ERROR", "Error"))]
        cause = (ours or theirs or ["no error line in its log"])[-1]
        causes.setdefault(cause, []).append(trial.name)
    cause, names = max(causes.items(), key=lambda item: len(item[1]))
    return (f"all {len(trials)} trials failed; the commonest cause ({len(names)} of "
            f"{len(trials)}): {cause}; full log: `dvc queue logs {names[0]}`")


def summarize(result: SweepResult) -> dict[str, Any]:
    """The sweep as JSON: every trial, every round's ranges, and the best trial."""
    every = [trial for batch in result.rounds for trial in batch]
    ranked = rank(every)
    best = ranked[0] if ranked and ranked[0].score is not None else None
    return {
        "sweep_id": result.sweep_id,
        "rank_metric": RANK_METRIC,
        "ranges": [[str(item) for item in ranges] for ranges in result.ranges],
        "trials": [
            {"name": t.name, "round": t.round, "status": t.status, "values": t.values,
             "metrics": t.metrics, "mlflow_run_id": t.run_id} for t in ranked
        ],
        "best": None if best is None else {
            "name": best.name, "values": best.values, "metrics": best.metrics,
            "mlflow_run_id": best.run_id,
        },
    }
