"""What a distributed `nnlab sweep` costs and gains (issue 18), on digits, in one run:

1. the same 8-trial study (the same 8 learning rates, enqueued; pruning off; --scale-epochs
   epochs, so that training dominates a trial) with 1 worker and with 2 workers: wall times
   and their ratio;
2. per trial: its wall time (`dvc exp run --temp`, DVC + MLflow plumbing included) against
   its training time (the train stage's own `training_seconds`): the plumbing's overhead;
3. a 20-trial TPE study with the median pruner: how many trials it pruned, the epochs they
   did not train, and that as whole trials saved.

Each study runs in its own throw-away copy of this repository, data stages already run. With
--blas-threads N (default 1) every trial's BLAS uses N threads: on a 2-core machine, two
workers can only run side by side if each trial keeps to one core (the usual setting for a
sweep: workers x threads = cores).

    python benchmarks/sweep.py [--trials 8] [--scale-epochs 400] [--prune-trials 20]
                               [--epochs 30] [--blas-threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support, run from anywhere

from nnlab.search import runner  # noqa: E402
from nnlab.search.study import open_study  # noqa: E402
from tests.support.e2e import copy_project, git, make_project, run  # noqa: E402

SAMPLE = "learning_rate=loguniform(1e-4,3e-2)"
RATES = [0.001, 0.003, 0.0005, 0.002, 0.005, 0.0015, 0.004, 0.0008, 0.0025, 0.0012]


def study_in(project: Path, name: str, trials: int, pruner: str, rates: list[float],
             epochs: int) -> None:
    """Create the study exactly as `nnlab sweep` would, with `rates` enqueued first."""
    options = runner.Options("numpy_dnn", name, [SAMPLE], trials=trials, pruner=pruner,
                             sets=[f"epochs={epochs}"])
    study, _ = open_study(f"sqlite:///{project / '.nnlab/optuna.db'}", name,
                          runner.make_plan(options, project))
    for rate in rates:
        study.enqueue_trial({"numpy_dnn.learning_rate": rate})


THREADS: dict[str, str] = {}  # BLAS thread settings for every trial (--blas-threads)


def sweep(project: Path, name: str, trials: int, workers: int, pruner: str,
          epochs: int) -> float:
    began = time.perf_counter()
    run(["nnlab", "sweep", "--study", name, "--model", "numpy_dnn", "--trials", str(trials),
         "--workers", str(workers), "--pruner", pruner, "--sample", SAMPLE,
         "--set", f"epochs={epochs}"], project, env=THREADS)
    return time.perf_counter() - began


def trials_of(project: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return open_study(f"sqlite:///{project / '.nnlab/optuna.db'}", name)[0].get_trials()


def training_seconds(project: Path, study: str) -> dict[int, float]:
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    return {int(found.data.tags["nnlab.trial"]): found.data.metrics["training_seconds"]
            for found in client.search_runs([experiment.experiment_id],
                                            f"tags.`nnlab.study` = '{study}'")
            if "training_seconds" in found.data.metrics}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--prune-trials", type=int, default=20)
    parser.add_argument("--scale-epochs", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="one worker, 1 trial of 2 epochs per study: checks that the "
                        "script runs (make test); no figures")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.prune_trials, args.scale_epochs, args.epochs = 1, 1, 2, 2
    if args.blas_threads:
        THREADS.update({name: str(args.blas_threads) for name in (
            "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    base = make_project(work / "base", {"numpy_dnn": {"early_stopping_patience": None}})
    run(["dvc", "repro", "split"], base)
    git(base, "add", "-A")
    git(base, "commit", "-qm", "data stages run")
    rates = (RATES * 4)[: args.trials]
    walls: dict[int, float] = {}
    overheads: list[tuple[float, float]] = []
    for workers in (1,) if args.quick else (1, 2):
        project = copy_project(base, work / f"w{workers}")
        study_in(project, "same", args.trials, "none", rates, args.scale_epochs)
        walls[workers] = sweep(project, "same", args.trials, workers, "none",
                               args.scale_epochs)
        trained = training_seconds(project, "same")
        for trial in trials_of(project, "same"):
            if trial.number in trained and "seconds" in trial.user_attrs:
                overheads.append((trial.user_attrs["seconds"], trained[trial.number]))
    print(f"numpy_dnn (default params.yaml, no early stopping) on digits; optuna "
          f"{optuna.__version__}; BLAS threads per trial: {args.blas_threads or 'default'}; "
          f"{os.cpu_count()} cores")
    print(f"\n1. the same {args.trials}-trial study (same enqueued learning rates, no pruning, "
          f"{args.scale_epochs} epochs)")
    print(f"   1 worker : {walls[1]:7.1f} s")
    if 2 in walls:
        print(f"   2 workers: {walls[2]:7.1f} s   speed-up {walls[1] / walls[2]:.2f}x "
              "(target >= 1.8x when training dominates a trial)")
    walls_per, trains = [wall for wall, _ in overheads], [train for _, train in overheads]
    plumbing = [wall - train for wall, train in overheads]
    print(f"\n2. per trial, over {len(overheads)} trials: wall (dvc exp run --temp) median "
          f"{statistics.median(walls_per):.1f} s, training median "
          f"{statistics.median(trains):.1f} s, plumbing (DVC + MLflow + process start-up) "
          f"median {statistics.median(plumbing):.1f} s = "
          f"{statistics.median(p / w for p, w in zip(plumbing, walls_per, strict=True)):.0%} "
          "of a trial")
    project = copy_project(base, work / "prune")
    workers = 1 if args.quick else 2
    wall = sweep(project, "prune", args.prune_trials, workers, "median", args.epochs)
    prune_report(trials_of(project, "prune"), args.epochs, wall, workers)


def prune_report(trials: list[optuna.trial.FrozenTrial], epochs: int, wall: float,
                 workers: int) -> None:
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    run_epochs = sum(max(t.intermediate_values) for t in pruned if t.intermediate_values)
    saved = len(pruned) * epochs - run_epochs
    best: Any = max((t.value or 0.0) for t in complete) if complete else None
    print(f"\n3. a {len(complete) + len(pruned)}-trial TPE study, median pruner, "
          f"{workers} worker(s): {wall:.1f} s; {len(pruned)} pruned, {len(complete)} complete "
          f"(best val.accuracy {best:.4f})")
    print(f"   pruned trials trained {run_epochs} of {len(pruned) * epochs} epochs: "
          f"{saved} epochs saved = {saved / epochs:.1f} whole trials of training")
    seconds = {state: [t.user_attrs["seconds"] for t in group if "seconds" in t.user_attrs]
               for state, group in (("pruned", pruned), ("complete", complete))}
    if seconds["pruned"] and seconds["complete"]:
        print(f"   wall per trial: pruned median {statistics.median(seconds['pruned']):.1f} s, "
              f"complete median {statistics.median(seconds['complete']):.1f} s")


if __name__ == "__main__":
    main()
