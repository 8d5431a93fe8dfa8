"""`nnlab sweep`: random hyperparameter search over DVC experiments, narrowed round by round.

A round samples every `--sample` param from its range (seeded), queues one DVC experiment per
trial (`dvc exp run --queue`), runs the queue (`dvc queue start -j N`), waits, and ranks the
trials by VALIDATION accuracy, never test. The top quarter narrows the ranges of the next round.
The train stage logs one MLflow run per trial; the sweep nests them under one parent run.

Everything above the "DVC and MLflow" line is pure and unit-tested without DVC.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nnlab.files import project_root
from nnlab.params import MODEL_NAMES, Params, ParamsError, flatten, validate

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
TOP_FRACTION = 0.25  # the share of successful trials that narrows the next round's ranges
MIN_WIDTH = 0.25  # a narrowed range keeps at least this share of the old width
SIGNIFICANT_DIGITS = 4  # sampled floats: readable in tables, and exact through params.yaml
RANK_METRIC = "val.accuracy"  # validation only: the test set is used once, in evaluate

_SPEC = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$")


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; its trials are stopped and its parent run marked KILLED."""


class SweepError(RuntimeError):
    """The sweep could not finish (every trial failed, the queue timed out, DVC refused)."""


# --------------------------------------------------------------------------------------------
# Ranges: parse, sample, narrow


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
            args = ",".join(_yaml_scalar(value) for value in self.values)
        elif self.kind == "int":
            args = f"{int(self.low)},{int(self.high)}"
        else:
            args = f"{self.low:.{SIGNIFICANT_DIGITS}g},{self.high:.{SIGNIFICANT_DIGITS}g}"
        return f"{self.key}={self.kind}({args})"


def _yaml_scalar(value: Any) -> str:
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


def param_keys(model: str) -> list[str]:
    """Params a sweep over `model` may sample or set: its own section's keys, plus `seed`."""
    if model not in MODEL_NAMES:
        raise ParamsError(f"unknown model {model!r}; choose one of: {', '.join(MODEL_NAMES)}")
    keys = flatten(Params().model_params(model), f"{model}.")
    # List items (cnn.blocks.0.filters) are left out: `dvc exp run -S` cannot address them.
    return ["seed", *(key for key in keys if not any(part.isdigit() for part in key.split(".")))]


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


def sample(ranges: Sequence[Range], trials: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """`trials` dicts of params key -> value, drawn trial by trial in the order of `ranges`."""
    drawn: list[dict[str, Any]] = []
    for _ in range(trials):
        values: dict[str, Any] = {}
        for item in ranges:
            if item.kind == "choice":
                values[item.key] = item.values[int(rng.integers(len(item.values)))]
            elif item.kind == "int":
                values[item.key] = int(rng.integers(int(item.low), int(item.high) + 1))
            else:
                if item.kind == "loguniform":
                    value = math.exp(rng.uniform(math.log(item.low), math.log(item.high)))
                else:
                    value = rng.uniform(item.low, item.high)
                values[item.key] = min(max(_round(value), item.low), item.high)
        drawn.append(values)
    return drawn


def _narrow_interval(low: float, high: float, best: Sequence[float]) -> tuple[float, float]:
    """The smallest interval inside [low, high] that holds every `best` value and keeps at
    least MIN_WIDTH of the old width (so one lucky trial does not collapse the range)."""
    width = max(max(best) - min(best), (high - low) * MIN_WIDTH)
    center = (max(best) + min(best)) / 2
    new_low = min(max(center - width / 2, low), high - width)  # shift inside, keep the width
    return new_low, new_low + width


def narrow(item: Range, best: Sequence[Any]) -> Range:
    """The range that the values of the best trials suggest for the next round.

    uniform: around the best values; loguniform: the same in log space; int: widened to whole
    numbers; choice: the values the best trials used, in their original order.
    """
    if not best:
        raise ValueError(f"narrow {item.key}: needs the values of at least one trial")
    if item.kind == "choice":
        return Range(item.key, "choice", values=tuple(v for v in item.values if v in best))
    if item.kind == "loguniform":
        low, high = _narrow_interval(
            math.log(item.low), math.log(item.high), [math.log(float(v)) for v in best]
        )
        new_low = max(_round(math.exp(low)), item.low)
        new_high = min(_round(math.exp(high)), item.high)
        return Range(item.key, item.kind, new_low, new_high)
    low, high = _narrow_interval(item.low, item.high, [float(v) for v in best])
    if item.kind == "int":
        low, high = math.floor(low + 1e-9), math.ceil(high - 1e-9)
        return Range(item.key, "int", float(low), float(max(high, low + 1)))
    return Range(item.key, item.kind, max(_round(low), item.low), min(_round(high), item.high))


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


def top_quarter(trials: Sequence[Trial]) -> list[Trial]:
    """The best TOP_FRACTION of the successful trials (at least one, if any succeeded)."""
    scored = [trial for trial in rank(trials) if trial.score is not None]
    return scored[: max(1, math.ceil(len(scored) * TOP_FRACTION))] if scored else []


def narrow_all(ranges: Sequence[Range], trials: Sequence[Trial]) -> list[Range]:
    """Every range narrowed around the top quarter of `trials`.

    Raises:
        SweepError: no trial succeeded, so there is nothing to narrow around.
    """
    best = top_quarter(trials)
    if not best:
        raise SweepError("no trial succeeded, so the ranges cannot be narrowed")
    return [narrow(item, [trial.values[item.key] for trial in best]) for item in ranges]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.{SIGNIFICANT_DIGITS}g}"
    return _yaml_scalar(value)


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
        rows.append(first + [_cell(trial.values[key]) for key in keys])
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def parse_overrides(pairs: Sequence[str], model: str) -> dict[str, Any]:
    """`--set KEY=VALUE` pairs (YAML values, bare keys mean `<model>.KEY`) as a dict."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ParamsError(f"--set {pair!r}: expected KEY=VALUE, e.g. numpy_dnn.epochs=5")
        overrides[resolve_key(name.strip(), model, f"--set {pair!r}")] = _choice_value(value)
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


def check_trials(raw: Mapping[str, Any], overrides: Mapping[str, Any],
                 trials: Sequence[Mapping[str, Any]]) -> Params:
    """Validate params.yaml with the `--set` overrides and then each trial's values applied,
    so a value the schema rejects fails before anything is queued; returns the base params.

    Raises:
        ParamsError: names the trial's values and the schema's complaint.
    """
    base = validate(apply_overrides(raw, overrides))
    for values in trials:
        try:
            validate(apply_overrides(raw, {**overrides, **values}))
        except ParamsError as error:
            shown = ", ".join(f"{key}={_cell(value)}" for key, value in values.items())
            raise ParamsError(f"sampled {shown}: {error}") from None
    return base


def trial_name(sweep_id: str, round_number: int, index: int, trials: int) -> str:
    """`sweep-<id>-r1-t01`: sortable, and a valid git ref name as DVC requires."""
    return f"sweep-{sweep_id}-r{round_number}-t{index:0{max(2, len(str(trials)))}d}"


def new_sweep_id() -> str:
    """A short id that names the sweep's experiments and tags its MLflow runs (not seeded:
    it identifies a sweep, it never changes what is trained)."""
    return uuid.uuid4().hex[:6]


# --------------------------------------------------------------------------------------------
# DVC and MLflow


def _cli_value(value: Any) -> str:
    # `-S` parses values as YAML: floats in full repr, lists in flow style.
    return repr(value) if isinstance(value, float) else _yaml_scalar(value)


def _dvc(args: list[str], root: Path, timeout: float = 600) -> str:
    # Output goes to a file, not a pipe: `dvc queue start` leaves daemon workers that inherit
    # its stdout, and reading a pipe to EOF would block until they exit (after the queue).
    with tempfile.TemporaryFile("w+", encoding="utf-8") as output:
        try:
            result = subprocess.run(["dvc", *args], cwd=root, stdout=output,
                                    stderr=subprocess.STDOUT, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SweepError(f"`dvc {' '.join(args)}` did not run: {error}") from None
        output.seek(0)
        text = output.read()
    if result.returncode != 0:
        tail = text.strip().splitlines()[-3:]
        raise SweepError(f"`dvc {' '.join(args)}` failed: {' | '.join(tail)}")
    return text


def queue_trial(root: Path, trial: Trial, overrides: Mapping[str, Any],
                targets: Sequence[str]) -> None:
    """Queue one DVC experiment with the trial's values (and the `--set` overrides)."""
    sets = [f"{key}={_cli_value(value)}" for key, value in {**overrides, **trial.values}.items()]
    args = ["exp", "run", "--queue", *targets, "--name", trial.name]
    for item in sets:
        args += ["-S", item]
    _dvc(args, root)


States = dict[str, tuple[str, dict[str, float]]]  # experiment name -> (DVC state, val metrics)


def baseline_rev(root: Path) -> str:
    """The commit the trials are based on; `dvc exp` needs a git repo with one commit."""
    result = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=root,
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise SweepError(f"{root}: not a git repository with a commit; `dvc exp run` needs one "
                         "(git init && git add -A && git commit)")
    return result.stdout.strip()


def experiment_states(root: Path, model: str, baseline: str) -> States:
    """Experiment name -> (DVC state, validation metrics of `model`) of the baseline commit's
    experiments (the baseline is pinned: a commit made during the sweep moves HEAD).

    Metrics are kept only for finished experiments: a queued, running or failed one shows the
    baseline commit's metrics.json, which must never be taken for a trial's result.
    """
    prefix = f"reports/{model}/metrics.json:"
    states: States = {}
    for row in _exp_show_rows(root, baseline):
        name = row.get("Experiment")
        if not name or row.get("typ") == "baseline":
            continue
        state = str(row.get("State") or "Success")  # finished experiments have no state
        metrics = {
            key.removeprefix(prefix): float(value) for key, value in row.items()
            if key.startswith(prefix + "val.") and isinstance(value, int | float)
        } if state == "Success" else {}
        states[str(name)] = (state, metrics)
    return states


# `dvc.api.exp_show` in a child process: in-process, it once hung for good in pygit2's blob
# reader (a thread waiting on an event that never came) after every trial had finished.
# A child can be given a deadline, and the next poll simply asks again.
_EXP_SHOW = ("import json, sys, dvc.api; print(json.dumps(dvc.api.exp_show("
             "repo=sys.argv[1], revs=[sys.argv[2]]), default=str))")


def _exp_show_rows(root: Path, baseline: str, timeout: float = 300) -> list[dict[str, Any]]:
    from dvc.exceptions import DvcException

    try:
        result = subprocess.run([sys.executable, "-c", _EXP_SHOW, str(root), baseline],
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DvcException(f"`dvc exp show` did not answer within {timeout:.0f} s") from None
    if result.returncode != 0 or not result.stdout.strip():
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise DvcException(f"`dvc exp show` failed: {lines[-1]}")
    rows: list[dict[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return rows


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


_SWEEP_TAG = "nnlab.sweep_id"


def start_parent_run(experiment_name: str, sweep_id: str, model: str,
                     params: Mapping[str, Any]) -> str:
    """Create the sweep's parent MLflow run (and the store, before any worker starts)."""
    import mlflow

    from nnlab import tracking

    experiment_id = tracking.setup(experiment_name)
    client = mlflow.MlflowClient(tracking.tracking_uri())
    run = client.create_run(
        experiment_id, run_name=f"sweep-{sweep_id}",
        tags={_SWEEP_TAG: sweep_id, "model": model, "nnlab.kind": "sweep"},
    )
    client.log_batch(run.info.run_id, params=[
        mlflow.entities.Param(key, str(value)[: tracking.MAX_PARAM_LENGTH])
        for key, value in params.items()
    ])
    return str(run.info.run_id)


def adopt_trial_runs(experiment_name: str, parent_id: str, sweep_id: str,
                     trials: Sequence[Trial]) -> None:
    """Nest each trial's MLflow run (made by train@<model>, tagged dvc.exp_name) under the
    parent run. Tags set from here, not env vars: those do not reach DVC's queue workers."""
    import mlflow

    from nnlab import tracking

    client = mlflow.MlflowClient(tracking.tracking_uri())
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`dvc.exp_name` LIKE 'sweep-{sweep_id}-%'",
        max_results=10000,
    )
    by_name: dict[str, Any] = {}
    for found in sorted(runs, key=lambda item: item.info.start_time or 0):
        by_name[found.data.tags["dvc.exp_name"]] = found  # a retried trial: its latest run
    for trial in trials:
        run = by_name.get(trial.name)
        if run is None:
            continue  # restored from DVC's run-cache, or failed before MLflow started
        trial.run_id = str(run.info.run_id)
        for key, value in {"mlflow.parentRunId": parent_id, _SWEEP_TAG: sweep_id,
                           "nnlab.sweep_round": str(trial.round)}.items():
            client.set_tag(trial.run_id, key, value)


def finish_parent_run(parent_id: str, summary: Mapping[str, Any], status: str) -> None:
    """Log the best params, best validation accuracy and every round's ranges; end the run."""
    import mlflow

    from nnlab import tracking

    client = mlflow.MlflowClient(tracking.tracking_uri())
    best = summary.get("best")
    if best:
        client.log_batch(
            parent_id,
            metrics=[mlflow.entities.Metric(f"best.{RANK_METRIC}", best["metrics"][RANK_METRIC],
                                            int(time.time() * 1000), 0)],
            params=[mlflow.entities.Param(f"best.{key}", _cell(value))
                    for key, value in best["values"].items()],
            tags=[mlflow.entities.RunTag("nnlab.best_trial", best["name"])],
        )
    *sampled, suggested = summary["ranges"]
    for index, ranges in enumerate(sampled, start=1):
        client.log_param(parent_id, f"round{index}.ranges", " ".join(ranges)[:6000])
    client.log_param(parent_id, "suggested.ranges", " ".join(suggested)[:6000])
    client.log_dict(parent_id, dict(summary), "sweep.json")
    client.set_terminated(parent_id, status)


@dataclass
class SweepResult:
    sweep_id: str
    parent_run_id: str
    rounds: list[list[Trial]]
    ranges: list[list[Range]]  # ranges[i] sampled round i+1; the last one is the suggestion


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
    fixed = parse_overrides(overrides, model)
    params_file = root / "params.yaml"
    if not params_file.is_file():
        raise FileNotFoundError(f"{params_file}: not found; run nnlab sweep in the project root")
    raw = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
    rng = np.random.default_rng(seed)
    values = sample(ranges, trials, rng)
    base = check_trials(raw, fixed, values)
    baseline = baseline_rev(root)
    # Only this model's stages (and what they need): `report` would retrain every model.
    targets = list(targets) if targets else [f"evaluate@{model}"]

    sweep_id = new_sweep_id()
    experiment_name = base.data.dataset
    parent_id = start_parent_run(experiment_name, sweep_id, model, {
        "model": model, "trials": trials, "rounds": rounds, "jobs": jobs, "seed": seed,
        "samples": " ".join(specs), "set": " ".join(overrides), "targets": " ".join(targets),
    })
    result = SweepResult(sweep_id, parent_id, [], [ranges])
    status = "FAILED"
    batch: list[Trial] = []
    try:
        for round_number in range(1, rounds + 1):
            if round_number > 1:
                values = sample(ranges, trials, rng)
                check_trials(raw, fixed, values)
            batch = [Trial(trial_name(sweep_id, round_number, index, trials), round_number, v)
                     for index, v in enumerate(values, start=1)]
            report(f"Round {round_number}/{rounds}: queueing {trials} trials of {model} "
                   f"(sweep {sweep_id}; MLflow parent run {parent_id})")
            for trial in batch:
                queue_trial(root, trial, fixed, targets)
            # Once, after queueing: starting workers early and again later made DVC spawn a
            # duplicate worker when a busy one missed its 1 s ping (more than `jobs` at once).
            _dvc(["queue", "start", "-j", str(jobs)], root)
            wait(root, batch, model, baseline, timeout, report=report)
            adopt_trial_runs(experiment_name, parent_id, sweep_id, batch)
            result.rounds.append(batch)
            report("")
            report(format_table(batch, keys))
            for trial in batch:
                if trial.status == "success" and trial.run_id is None:
                    report(f"note: {trial.name} has no MLflow run of its own: DVC restored it "
                           "from its run-cache (an earlier run had the same params)")
            if not any(trial.score is not None for trial in batch):
                raise SweepError(failure_summary(root, batch))
            ranges = narrow_all(ranges, batch)
            result.ranges.append(ranges)
            best = top_quarter(batch)
            report(f"Narrowed ranges from the top {len(best)} of "
                   f"{sum(t.score is not None for t in batch)} successful trials:")
            for item in ranges:
                report(f"  --sample '{item}'")
            report("")
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        unfinished = [trial.name for batch in [*result.rounds, batch] for trial in batch
                      if trial.status in ("queued", "running")]
        with contextlib.suppress(SweepError):
            if unfinished:
                _dvc(["queue", "kill", *unfinished], root, timeout=120)
            _dvc(["queue", "remove", "--queued"], root, timeout=120)
        raise SweepInterrupted(
            f"interrupted: stopped {len(unfinished)} unfinished trial(s) of sweep {sweep_id} "
            f"(`dvc queue kill`); its MLflow parent run {parent_id} is marked KILLED") from None
    finally:
        finish_parent_run(parent_id, summarize(result), status)
    return result


def failure_summary(root: Path, trials: Sequence[Trial]) -> str:
    """Why every trial failed: the commonest error line in their `dvc queue logs`, and where
    to read one such log."""
    causes: dict[str, list[str]] = {}
    for trial in trials:
        try:
            log = _dvc(["queue", "logs", trial.name], root, timeout=120)
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


__all__ = [
    "DISTRIBUTIONS",
    "Range",
    "SweepError",
    "Trial",
    "format_table",
    "narrow",
    "narrow_all",
    "parse_spec",
    "rank",
    "run_sweep",
    "sample",
]
