"""The team stack's costs, measured on this machine in one run (issue 17).

1. Start time of `nnlab server start`: cold (a new data dir: initdb, buckets, MLflow's schema
   migration) and warm (the same data dir again after a stop), and the stop time.
2. Logging overhead per run: what a training run logs (20 params, 10 epochs x 4 metrics in one
   batch, 5 final metrics, 4 tags, two 40 kB artifacts), against the local SQLite store and
   against the MLflow server, in the same process, alternating.
3. `dvc push` / `dvc pull` of the default pipeline's data and non-TensorFlow models (digits;
   download, prepare, split, train@numpy_dnn and train@logreg) to the `team` remote.

    python benchmarks/team_stack.py [--runs 20] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support, run from anywhere

from nnlab.server.settings import free_port  # noqa: E402
from tests.support.e2e import make_project, run, user_env  # noqa: E402


def timed(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    run(args, cwd, env=env)
    return time.perf_counter() - began


def log_one_run(uri: str, artifacts: list[Path]) -> float:
    import mlflow
    from mlflow.entities import Metric

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment("logging-benchmark").experiment_id
    began = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment) as active:
        mlflow.log_params({f"param_{i}": i for i in range(20)})
        mlflow.set_tags({f"tag_{i}": "x" for i in range(4)})
        now = int(time.time() * 1000)
        mlflow.MlflowClient().log_batch(active.info.run_id, metrics=[
            Metric(name, 0.5, now, epoch) for epoch in range(10)
            for name in ("loss", "accuracy", "val_loss", "val_accuracy")])
        mlflow.log_metrics({f"test.metric_{i}": 0.9 for i in range(5)})
        for path in artifacts:
            mlflow.log_artifact(str(path))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true",
                        help="1 logged run each, no restart, the data stages only: checks "
                        "that the script runs (make test)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    work = Path(tempfile.mkdtemp(prefix="team-bench-"))
    data_dir = work / "server"
    ports = ["--mlflow-port", str(free_port()), "--s3-port", str(free_port()),
             "--grpc-port", str(free_port())]
    nnlab = ["nnlab", "server"]
    try:
        cold = timed([*nnlab, "start", "--data-dir", str(data_dir), *ports], work)
        if not args.quick:
            stop = timed([*nnlab, "stop", "--data-dir", str(data_dir)], work)
            warm = timed([*nnlab, "start", "--data-dir", str(data_dir)], work)
            print(f"stack start: cold {cold:.1f} s, warm {warm:.1f} s; stop {stop:.1f} s",
                  flush=True)

        uri = f"http://127.0.0.1:{ports[1]}"
        sqlite = f"sqlite:///{work / 'mlflow.db'}"
        artifacts = []
        for name in ("confusion.png", "history.csv"):
            path = work / name
            path.write_bytes(os.urandom(40_000))
            artifacts.append(path)
        log_one_run(sqlite, artifacts)  # creates and migrates the SQLite store: not timed
        log_one_run(uri, artifacts)
        local, server = [], []
        for _ in range(args.runs):
            local.append(log_one_run(sqlite, artifacts))
            server.append(log_one_run(uri, artifacts))
        print(f"logging one run ({args.runs} runs each, median): local SQLite "
              f"{statistics.median(local) * 1000:.0f} ms, server "
              f"{statistics.median(server) * 1000:.0f} ms, overhead "
              f"{(statistics.median(server) - statistics.median(local)) * 1000:+.0f} ms "
              f"({statistics.median(server) / statistics.median(local):.2f}x)")

        project = make_project(work / "project", {})
        stages = ["split"] if args.quick else ["train@numpy_dnn", "train@logreg"]
        run(["dvc", "repro", *stages], project)
        run([*nnlab, "start", "--data-dir", str(data_dir)], project)  # adds remote `team`
        size = sum(path.stat().st_size for path in (project / ".dvc" / "cache").rglob("*")
                   if path.is_file())
        push = timed(["dvc", "push", "--with-deps", *stages], project)
        shutil.rmtree(project / ".dvc" / "cache")
        for folder in ("data",) if args.quick else ("data", "models"):  # --quick: no models
            shutil.rmtree(project / folder)
        pull = timed(["dvc", "pull", "--with-deps", *stages], project)
        status = run(["dvc", "status", *stages], project)
        assert "up to date" in status, status
        megabytes = size / 1e6
        print(f"dvc push: {megabytes:.2f} MB in {push:.1f} s ({megabytes / push:.2f} MB/s); "
              f"dvc pull: {pull:.1f} s ({megabytes / pull:.2f} MB/s), including DVC's "
              "start-up")
    finally:
        subprocess.run([*nnlab, "stop", "--data-dir", str(data_dir)], env=user_env(),
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
