"""`run_sweep`: rounds of sampled trials, queued as DVC experiments, waited for, ranked and
narrowed."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nnlab.files import project_root
from nnlab.params import MODEL_NAMES, ParamsError
from nnlab.search.dvc import States, baseline_rev, experiment_states, queue_trial, run_dvc
from nnlab.search.narrowing import narrow_all, top_quarter
from nnlab.search.parent_run import adopt_trial_runs, finish_parent_run, start_parent_run
from nnlab.search.report import failure_summary, format_table, summarize
from nnlab.search.space import Range, check_trials, parse_overrides, parse_spec, sample
from nnlab.search.trials import RANK_METRIC, SweepError, SweepInterrupted, SweepResult, Trial


def trial_name(sweep_id: str, round_number: int, index: int, trials: int) -> str:
    """`sweep-<id>-r1-t01`: sortable, and a valid git ref name as DVC requires."""
    return f"sweep-{sweep_id}-r{round_number}-t{index:0{max(2, len(str(trials)))}d}"


def new_sweep_id() -> str:
    """A short id that names the sweep's experiments and tags its MLflow runs (not seeded:
    it identifies a sweep, it never changes what is trained)."""
    return uuid.uuid4().hex[:6]


def update_trials(trials: Sequence[Trial], states: States, missing: dict[str, int]) -> None:
    """Apply DVC's experiment states to unfinished trials (a pure step of `wait`)."""
    for trial in trials:
        if trial.status in ("success", "failed"):
            continue
        if trial.name not in states:
            # Briefly absent while a worker moves it from the queue to a temp dir; gone for
            # good if someone ran `dvc queue remove` or `dvc exp remove`.
            missing[trial.name] = missing.get(trial.name, 0) + 1
            if missing[trial.name] >= 5:
                trial.status = "failed"
            continue
        missing.pop(trial.name, None)
        state, metrics = states[trial.name]
        if state == "Success":
            trial.metrics = metrics
            trial.status = "success" if RANK_METRIC in metrics else "failed"
        elif state in ("Failed", "Canceled"):
            trial.status = "failed"
        else:
            trial.status = "running" if state == "Running" else "queued"


def wait(root: Path, trials: Sequence[Trial], model: str, baseline: str, timeout: float,
         poll_seconds: float = 15.0, report: Callable[[str], None] = print) -> None:
    """Poll DVC until every trial succeeded or failed.

    Raises:
        SweepError: still unfinished after `timeout` seconds (the workers keep running).
    """
    from dvc.exceptions import DvcException

    deadline = time.monotonic() + timeout
    missing: dict[str, int] = {}
    last = ""
    error: DvcException | None = None
    while True:
        try:
            states: States | None = experiment_states(root, model, baseline)
            error = None
        except DvcException as failure:
            # exp show races with workers: a trial's temp repo can be half made or half
            # removed while it is read (NotDvcRepoError). Retry until the deadline.
            states, error = None, failure
        if states is not None:
            update_trials(trials, states, missing)
        counts = {status: sum(t.status == status for t in trials)
                  for status in ("queued", "running", "success", "failed")}
        progress = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
        if progress != last:
            report(f"  {progress}")
            last = progress
        if counts["queued"] + counts["running"] == 0:
            return
        if time.monotonic() > deadline:
            waiting = ", ".join(t.name for t in trials if t.status in ("queued", "running"))
            last_error = f"; last `dvc exp show` error: {error}" if error else ""
            raise SweepError(
                f"trials still unfinished after {timeout:.0f} s: {waiting}; they keep running "
                f"(see `dvc queue status`, `dvc queue logs NAME`); raise --timeout{last_error}"
            )
        time.sleep(poll_seconds)


@dataclass
class _Plan:
    """What every round of one sweep shares."""

    model: str
    keys: list[str]
    fixed: dict[str, Any]
    raw: dict[str, Any]
    targets: list[str]
    root: Path
    baseline: str
    jobs: int
    timeout: float


def _checked_ranges(model: str, specs: Sequence[str], trials: int, rounds: int,
                    jobs: int) -> list[Range]:
    """The parsed `--sample` ranges, or a ParamsError before anything is queued."""
    if model not in MODEL_NAMES:
        raise ParamsError(f"unknown model {model!r}; choose one of: {', '.join(MODEL_NAMES)}")
    if trials < 1 or rounds < 1 or jobs < 1:
        raise ParamsError(
            f"--trials, --rounds and --jobs must be at least 1, got trials={trials}, "
            f"rounds={rounds}, jobs={jobs}"
        )
    if not specs:
        raise ParamsError("give at least one --sample, e.g. 'learning_rate=loguniform(1e-4,1e-1)'")
    ranges = [parse_spec(text, model) for text in specs]
    keys = [item.key for item in ranges]
    if len(set(keys)) != len(keys):
        raise ParamsError(f"--sample: a param is sampled twice: {', '.join(keys)}")
    return ranges


def _read_params(root: Path) -> dict[str, Any]:
    params_file = root / "params.yaml"
    if not params_file.is_file():
        raise FileNotFoundError(f"{params_file}: not found; run nnlab sweep in the project root")
    return yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}


def run_sweep(
    model: str,
    specs: Sequence[str],
    trials: int,
    jobs: int = 2,
    overrides: Sequence[str] = (),
    rounds: int = 1,
    seed: int = 0,
    targets: Sequence[str] | None = None,
    timeout: float = 6 * 3600,
    root: Path | None = None,
    report: Callable[[str], None] = print,
) -> SweepResult:
    """Run the whole sweep; `report` gets progress lines, ranked tables and narrowed ranges.

    Raises:
        ParamsError: a bad spec, key, value or count (before anything is queued).
        SweepError: DVC refused, the queue timed out, or every trial of a round failed.
    """
    root = root or project_root()
    ranges = _checked_ranges(model, specs, trials, rounds, jobs)
    fixed = parse_overrides(overrides, model)
    raw = _read_params(root)
    rng = np.random.default_rng(seed)
    base = check_trials(raw, fixed, sample(ranges, trials, rng))
    # Only this model's stages (and what they need): `report` would retrain every model.
    plan = _Plan(model, [item.key for item in ranges], fixed, raw,
                 list(targets) if targets else [f"evaluate@{model}"], root,
                 baseline_rev(root), jobs, timeout)
    rng = np.random.default_rng(seed)  # round 1 samples exactly what was checked above
    sweep_id = new_sweep_id()
    experiment_name = base.data.dataset
    parent_id = start_parent_run(experiment_name, sweep_id, model, {
        "model": model, "trials": trials, "rounds": rounds, "jobs": jobs, "seed": seed,
        "samples": " ".join(specs), "set": " ".join(overrides), "targets": " ".join(plan.targets)})
    result = SweepResult(sweep_id, parent_id, [], [ranges])
    status = "FAILED"
    try:
        for round_number in range(1, rounds + 1):
            values = sample(ranges, trials, rng)
            check_trials(raw, fixed, values)
            result.rounds.append([
                Trial(trial_name(sweep_id, round_number, index, trials), round_number, value)
                for index, value in enumerate(values, start=1)])
            report(f"Round {round_number}/{rounds}: queueing {trials} trials of {model} "
                   f"(sweep {sweep_id}; MLflow parent run {parent_id})")
            ranges = _run_round(plan, result.rounds[-1], ranges, experiment_name, parent_id,
                                sweep_id, report)
            result.ranges.append(ranges)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        stopped = _stop_unfinished(root, result)
        raise SweepInterrupted(
            f"interrupted: stopped {stopped} unfinished trial(s) of sweep {sweep_id} "
            f"(`dvc queue kill`); its MLflow parent run {parent_id} is marked KILLED") from None
    finally:
        finish_parent_run(parent_id, summarize(result), status)
    return result


def _run_round(plan: _Plan, batch: list[Trial], ranges: list[Range], experiment_name: str,
               parent_id: str, sweep_id: str, report: Callable[[str], None]) -> list[Range]:
    """Queue, run and rank one round's trials; the ranges narrowed for the next round."""
    for trial in batch:
        queue_trial(plan.root, trial, plan.fixed, plan.targets)
    # Once, after queueing: starting workers early and again later made DVC spawn a
    # duplicate worker when a busy one missed its 1 s ping (more than `jobs` at once).
    run_dvc(["queue", "start", "-j", str(plan.jobs)], plan.root)
    wait(plan.root, batch, plan.model, plan.baseline, plan.timeout, report=report)
    adopt_trial_runs(experiment_name, parent_id, sweep_id, batch)
    report("")
    report(format_table(batch, plan.keys))
    for trial in batch:
        if trial.status == "success" and trial.run_id is None:
            report(f"note: {trial.name} has no MLflow run of its own: DVC restored it "
                   "from its run-cache (an earlier run had the same params)")
    if not any(trial.score is not None for trial in batch):
        raise SweepError(failure_summary(plan.root, batch))
    narrowed = narrow_all(ranges, batch)
    report(f"Narrowed ranges from the top {len(top_quarter(batch))} of "
           f"{sum(t.score is not None for t in batch)} successful trials:")
    for item in narrowed:
        report(f"  --sample '{item}'")
    report("")
    return narrowed


def _stop_unfinished(root: Path, result: SweepResult) -> int:
    """Ctrl-C: kill the sweep's running trials and drop its queued ones; how many."""
    unfinished = [trial.name for batch in result.rounds for trial in batch
                  if trial.status in ("queued", "running")]
    with contextlib.suppress(SweepError):
        if unfinished:
            run_dvc(["queue", "kill", *unfinished], root, timeout=120)
        run_dvc(["queue", "remove", "--queued"], root, timeout=120)
    return len(unfinished)
