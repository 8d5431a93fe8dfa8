"""The neural models on a GPU against this machine's CPU (issue 45): the cnn on Keras's JAX
backend and numpy_cnn on CuPy, each through its family's own fit and predict (no DVC, no
MLflow: the lent GPU machine has neither), with params.yaml's architecture and batch size.

For each model, on CIFAR-shaped data (32x32x3, 10 classes, random pixels: only the time
counts) and on scikit-learn's real 8x8 digits (stratified: 20% for test, then 20% of the
rest for validation):
- the time of an epoch after the first (the first compiles: XLA, numba or CuPy's kernels),
  as training samples per second and as the seconds an epoch of 50,000 images takes at that
  rate;
- the digits test accuracy.

    python benchmarks/gpu.py --device cpu --json benchmarks/results/gpu-cpu.json
    python benchmarks/gpu.py --device gpu --compare benchmarks/results/gpu-cpu.json

`--compare` prints each figure's ratio to the CPU run's, next to the targets (cnn >= 20x,
numpy_cnn >= 10x per epoch; digits accuracy within 1 point). Without scikit-learn (the lent
GPU machine), `--digits FILE.npz` reads the digits that `--save-digits FILE.npz` wrote where
scikit-learn is installed. `--cifar-images` sets the CIFAR-shaped set's size (50,000 by
default; the CPU takes minutes an epoch, so its run here used fewer: the rate is per image).
`--quick`: a few hundred images and two epochs, to check that the script runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGETS = {"cnn": 20.0, "numpy_cnn": 10.0}  # per-epoch time, CPU / GPU
EPOCH_IMAGES = 50_000  # CIFAR-10's training set


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="gpu")
    parser.add_argument("--models", default="cnn,numpy_cnn")
    parser.add_argument("--cifar-images", type=int, default=EPOCH_IMAGES)
    parser.add_argument("--cifar-epochs", type=int, default=3)
    parser.add_argument("--digits", type=Path, help="digits .npz (--save-digits wrote it)")
    parser.add_argument("--save-digits", type=Path, help="write scikit-learn's digits, stop")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--compare", type=Path, help="a CPU run's --json: print the ratios")
    parser.add_argument("--quick", action="store_true")
    return parser.parse_args()


def _setup(device: str) -> None:
    """Keras on JAX, on the CPU only for `--device cpu` (before anything imports Keras)."""
    os.environ["KERAS_BACKEND"] = "jax"
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"


def _digits(path: Path | None) -> dict[str, np.ndarray]:
    """The project's digits split: train, val (20% of the training part, stratified), test."""
    if path is not None:
        with np.load(path, allow_pickle=False) as saved:
            return dict(saved)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.clip(np.rint(digits.images * 255 / 16), 0, 255).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(images, labels, test_size=0.2,
                                                      stratify=labels, random_state=42)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.2,
                                                      stratify=y_rest, random_state=42)
    return {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val,
            "x_test": x_test, "y_test": y_test}


def _model(name: str, device: str, changes: dict[str, Any]) -> Any:
    import os

    from nnlab.models.base import new_model
    from nnlab.params import load_params

    section = load_params(ROOT / "params.yaml").model_params(name)
    update = {"device": device, **({"backend": "jax"} if name == "cnn" else {}), **changes}
    params = type(section).model_validate({**section.model_dump(), **update})
    os.environ.update(params.environment())  # Keras's backend, before Keras is imported
    return new_model(name, params, seed=42)


def _fit(model: Any, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]
         ) -> tuple[list[float], int]:
    """(each epoch's seconds, epochs run)."""
    marks = [time.perf_counter()]
    rows = model.fit(train, val, n_classes=int(train[1].max()) + 1,
                     on_epoch=lambda row: marks.append(time.perf_counter()))
    return [end - start for start, end in zip(marks, marks[1:], strict=False)], len(rows)


def measure(name: str, device: str, args: argparse.Namespace,
            digits: dict[str, np.ndarray]) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    count = 512 if args.quick else args.cifar_images
    cifar = (rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
             rng.integers(0, 10, count).astype(np.int64))
    val = (cifar[0][:256], cifar[1][:256])
    epochs = 2 if args.quick else args.cifar_epochs
    model = _model(name, device, {"epochs": epochs, "early_stopping_patience": None})
    seconds, _ = _fit(model, cifar, val)
    after_first = statistics.median(seconds[1:])
    result = {"model": name, "runtime": model.runtime(), "cifar_images": count,
              "batch_size": model.params.batch_size, "cifar_epoch_seconds": seconds,
              "samples_per_second": count / after_first,
              "epoch_of_50000_seconds": EPOCH_IMAGES * after_first / count}
    changes = {"epochs": 2, "early_stopping_patience": None} if args.quick else {}
    model = _model(name, device, changes)
    seconds, ran = _fit(model, (digits["x_train"], digits["y_train"]),
                        (digits["x_val"], digits["y_val"]))
    predicted = model.predict_proba(digits["x_test"]).argmax(axis=1)
    result.update(digits_epochs=ran, digits_epoch_seconds=statistics.median(seconds[1:]),
                  digits_test_accuracy=float((predicted == digits["y_test"]).mean()))
    return result


def _table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'model':10} {'backend':8} {'device':22} {'CIFAR-shaped imgs/s':>20} "
          f"{'s / 50,000-image epoch':>23} {'digits s/epoch':>15} {'digits test acc':>16}")
    for row in results:
        print(f"{row['model']:10} {row['runtime']['backend']:8} {row['runtime']['device']:22} "
              f"{row['samples_per_second']:20.0f} {row['epoch_of_50000_seconds']:23.1f} "
              f"{row['digits_epoch_seconds']:15.3f} {row['digits_test_accuracy']:16.4f}")
    print("(CIFAR-shaped: epochs after the first, median; "
          f"{results[0]['cifar_images']} images, batch {results[0]['batch_size']})")


def _compare(results: list[dict[str, Any]], path: Path) -> None:
    cpu = {row["model"]: row for row in json.loads(path.read_text())}
    print(f"\nagainst {path} (its device: "
          f"{', '.join(sorted({row['runtime']['device'] for row in cpu.values()}))})")
    for row in results:
        base = cpu.get(row["model"])
        if base is None:
            continue
        ratio = base["epoch_of_50000_seconds"] / row["epoch_of_50000_seconds"]
        points = 100 * (row["digits_test_accuracy"] - base["digits_test_accuracy"])
        print(f"{row['model']:10} per-epoch time, CPU / this: {ratio:6.1f}x "
              f"(target >= {TARGETS[row['model']]:.0f}x); digits accuracy, this - CPU: "
              f"{points:+.1f} points (target within 1)")


def main() -> None:
    args = _arguments()
    if args.save_digits:
        np.savez(args.save_digits, **_digits(None))
        print(f"wrote {args.save_digits}")
        return
    _setup(args.device)
    digits = _digits(args.digits)
    results = [measure(name, args.device, args, digits) for name in args.models.split(",")]
    _table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.compare:
        _compare(results, args.compare)
    print("gpu.py: done")


if __name__ == "__main__":
    main()
