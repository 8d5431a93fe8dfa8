"""The DVC side of a sweep: each trial is a queued `dvc exp run`, whose state is read back from
`dvc exp show`."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnlab.search.space import yaml_scalar
from nnlab.search.trials import SweepError, Trial


def _cli_value(value: Any) -> str:
    # `-S` parses values as YAML: floats in full repr, lists in flow style.
    return repr(value) if isinstance(value, float) else yaml_scalar(value)


def run_dvc(args: list[str], root: Path, timeout: float = 600) -> str:
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
    run_dvc(args, root)


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
