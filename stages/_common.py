"""What every stage shares: argument parsing, one clean line for user errors, and a clean
stop on SIGTERM/SIGINT (no traceback, no partial outputs, no MLflow run left RUNNING)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from nnlab.core import quiet, stops
from nnlab.core.errors import USER_ERRORS, Interrupted, storage_problem
from nnlab.core.files import project_root
from nnlab.core.layout import CHECKPOINTS_DIR, Layout
from nnlab.core.schema import Params
from nnlab.params import MODEL_NAMES, load_params

Result = TypeVar("Result")


def parse_model(argv: list[str] | None, stage: str) -> str:
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}")
    parser.add_argument("model", choices=MODEL_NAMES)
    return str(parser.parse_args(argv).model)


def _checkpointed(stage: str, since: float) -> bool:
    """Whether this run of the stage left a checkpoint that the next one goes on from (file
    times are coarser than the clock: a second of slack)."""
    folder = project_root() / CHECKPOINTS_DIR
    return any(path.stat().st_mtime >= since - 1.0 for path in folder.glob(f"{stage}.*.npz"))


def remove_outputs(outputs: Sequence[Path]) -> None:
    for path in outputs:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def run(
    stage: str,
    body: Callable[[Params], None],
    outputs: Sequence[Path] = (),
    mlflow_run: bool = False,
    sections: Sequence[str] = (),
) -> None:
    """Load params.yaml, validate its top level and `sections` (exactly the sections of the
    stage's `params:` in dvc.yaml; tests/unit/project/test_architecture.py checks it), then
    run `body`.

    - A user error (bad params, a missing or corrupt file, a diverging loss) exits 2 with
      one line.
    - SIGTERM (`kill`, `timeout`, a cancelled CI job) and SIGINT (Ctrl-C) unwind like an
      exception: the MLflow run is marked KILLED on the way out, and the stage exits
      128 + the signal number with one line.
    - A write the disk refused (full, over a size limit, read-only) exits 2 with one line
      naming the file.
    - Whatever stopped it, `outputs` are removed, so DVC never sees a stale or half-written
      result that looks valid.
    """
    stops.catch_signals()
    started = time.time()
    try:
        with quiet.filtered_stderr():  # TensorFlow's C++ banners
            body(load_params(sections=sections))
    except Interrupted as stop:
        remove_outputs(outputs)
        marked = "its MLflow run is marked KILLED, " if mlflow_run else ""
        again = ("`dvc repro` goes on from its last checkpoint" if _checkpointed(stage, started)
                 else "`dvc repro` starts it again")
        print(f"{stage}: stopped by {stop.signal_name}; {marked}partial outputs removed; "
              f"{again}", file=sys.stderr)
        raise SystemExit(128 + stop.signal_number) from None
    except USER_ERRORS as error:
        remove_outputs(outputs)
        print(f"{stage}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except BaseException as error:
        remove_outputs(outputs)
        problem = storage_problem(error)  # a full disk, a read-only folder or store
        if problem is None:
            raise
        print(f"{stage}: error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def run_model_stage(stage: str, argv: list[str] | None,
                    step: Callable[[str, Params, Layout], Result],
                    summary: Callable[[Result], str], own_section: bool) -> None:
    """`python -m stages.<stage> <model>`: run `step` for that model and print one line.
    `own_section`: the stage reads the model's params section (train does; evaluate scores
    the saved model and does not)."""
    model = parse_model(argv, stage)

    def body(params: Params) -> None:
        print(f"{stage}@{model}: {summary(step(model, params, Layout()))}")

    run(f"{stage}@{model}", body, Layout().outputs(stage, model), mlflow_run=True,
        sections=("data", model) if own_section else ("data",))
