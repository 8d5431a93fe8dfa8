"""What a study shows: its trials ranked by validation accuracy (never test), the ranges its
best quarter suggests, and the summary the parent run keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nnlab.search.narrowing import narrowed_ranges, top_quarter
from nnlab.search.space import Range, format_value
from nnlab.search.study import Plan
from nnlab.search.trial import EXP_ATTR, FAILURE_ATTR, SURPLUS_ATTR


def shown(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Every trial but the surplus ones (which ran nothing)."""
    return [trial for trial in trials if not trial.user_attrs.get(SURPLUS_ATTR)]


def ranked(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials best first (ties: lower number), then PRUNED by their last reported
    value, then the rest by number."""
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE
                       and t.value is not None), key=lambda t: (-(t.value or 0.0), t.number))
    pruned = sorted((t for t in trials if t.state == TrialState.PRUNED),
                    key=lambda t: (-_last_value(t), t.number))
    first = {t.number for t in complete + pruned}
    rest = sorted((t for t in shown(trials) if t.number not in first), key=lambda t: t.number)
    return complete + pruned + rest


def _last_value(trial: FrozenTrial) -> float:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else 0.0


def values(trial: FrozenTrial) -> dict[str, Any]:
    """The params the trial's experiment ran with (as rounded for `dvc exp run -S`)."""
    stored = trial.user_attrs.get("values")
    return dict(stored) if isinstance(stored, dict) else dict(trial.params)


def format_table(trials: Sequence[FrozenTrial], keys: Sequence[str],
                 top: int | None = None) -> str:
    """Rank, trial, state, val.accuracy, epochs run, DVC experiment and sampled values."""
    header = ["rank", "trial", "state", "val.accuracy", "epochs_run", "experiment",
              *(key.split(".", 1)[-1] for key in keys)]
    rows, position = [], 0
    for trial in ranked(trials)[:top]:
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            position += 1
            rank, score = str(position), f"{trial.value:.4f}"
        else:
            rank = "-"
            score = f"({_last_value(trial):.4f})" if trial.state == TrialState.PRUNED else ""
        epochs = str(max(trial.intermediate_values)) if trial.intermediate_values else ""
        trial_values = values(trial)
        rows.append([rank, str(trial.number), trial.state.name, score, epochs,
                     str(trial.user_attrs.get(EXP_ATTR, "")),
                     *(format_value(trial_values[key]) if key in trial_values else ""
                       for key in keys)])
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows])


def failures(trials: Sequence[FrozenTrial]) -> list[str]:
    """One line per failed trial: why its experiment failed."""
    return [f"trial {t.number}: {t.user_attrs[FAILURE_ATTR]}" for t in trials
            if t.state == TrialState.FAIL and FAILURE_ATTR in t.user_attrs]


def summarize(study: optuna.Study, plan: Plan) -> dict[str, Any]:
    """The study as JSON: its plan, every trial, the best one and the narrowed ranges."""
    trials = shown(study.get_trials(deepcopy=False))
    best = next((t for t in ranked(trials) if t.state == TrialState.COMPLETE), None)
    return {
        "study": study.study_name,
        "objective": "val.accuracy",
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value,
                    "values": values(t), "experiment": t.user_attrs.get(EXP_ATTR),
                    "mlflow_run_id": t.user_attrs.get("mlflow_run_id")} for t in ranked(trials)],
        "best": None if best is None else {
            "number": best.number, "value": best.value, "values": values(best),
            "experiment": best.user_attrs.get(EXP_ATTR, "")},
        "space": plan.space,
        "narrowed": [str(item) for item in narrowed_ranges(plan.ranges(), trials)],
    }


def study_report(study: optuna.Study, plan: Plan, top: int | None = None) -> str:
    """The ranked table, the state counts and the narrowed ranges, as `--report` prints."""
    trials = shown(study.get_trials(deepcopy=False))
    keys = [item.key for item in plan.ranges()]
    states = {state: sum(t.state == state for t in trials) for state in TrialState}
    counted = ", ".join(f"{n} {state.name.lower()}" for state, n in states.items() if n)
    narrowed: list[Range] = narrowed_ranges(plan.ranges(), trials)
    lines = [f"Study {study.study_name!r}: {plan.model}, {plan.trials} trials wanted; "
             f"{counted or 'no trials yet'} (sampler {plan.sampler}, pruner {plan.pruner})", "",
             format_table(trials, keys, top), ""]
    lines += failures(trials)[:5]
    lines.append(f"Narrowed ranges from the top {len(top_quarter(trials))} of "
                 f"{states[TrialState.COMPLETE]} complete trials (for a next study):")
    lines += [f"  --sample '{item}'" for item in narrowed]
    return "\n".join(lines)
