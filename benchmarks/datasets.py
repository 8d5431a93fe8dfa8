"""Dataset conversion speed and memory, on synthetic files of the real sizes and formats.

1. MNIST-sized IDX (60,000 x 28 x 28 train + 10,000 test, gzip'd): the time to parse the
   four files into arrays (`MNIST.load`) and the time of the whole `prepare` step (parse,
   check, write the .npy files).
2. CIFAR-10-sized binary batches (5 x 10,000 + 10,000 records): peak RSS of the real
   `python -m stages.prepare` and `python -m stages.split` processes, each measured with
   wait4(2), in a throw-away project folder.

    python benchmarks/datasets.py [--quick]

`--quick` (run by `make test`) uses 1/100 of the sizes and one repeat: it checks that the
script runs; its figures mean nothing.

Targets (issue 3): MNIST conversion < 2 s; prepare and split on CIFAR-10 < 1 GB peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from nnlab.core.layout import Layout
from nnlab.data import cifar10, ingest
from nnlab.data.idx import MNIST, to_idx
from nnlab.params import read, validate

ROOT = Path(__file__).resolve().parents[1]
SCALE = {"divisor": 1, "repeats": 3}  # --quick: 100 and 1


def mnist_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """Dark images with one bright random patch each: compresses about as well as MNIST."""
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    patches = rng.integers(0, 256, (n, 12, 12), dtype=np.uint8)
    images[:, 8:20, 8:20] = patches
    return images


def write_mnist(raw: Path) -> int:
    rng = np.random.default_rng(0)
    raw.mkdir(parents=True)
    size = 0
    for prefix, n in (("train", 60_000 // SCALE["divisor"]), ("t10k", 10_000 // SCALE["divisor"])):
        files = {
            f"{prefix}-images-idx3-ubyte.gz": to_idx(mnist_like(n, rng)),
            f"{prefix}-labels-idx1-ubyte.gz": to_idx(rng.integers(0, 10, n, dtype=np.uint8)),
        }
        for name, body in files.items():
            (raw / name).write_bytes(gzip.compress(body, compresslevel=6))
            size += (raw / name).stat().st_size
    return size


def bench_mnist(folder: Path) -> None:
    size = write_mnist(folder / "data" / "raw")
    load_times, prepare_times = [], []
    for _ in range(SCALE["repeats"]):
        start = time.perf_counter()
        raw = read(ROOT / "params.yaml")
        raw["data"]["dataset"] = "mnist"
        data = validate(raw, sections=["data"]).data
        dataset = MNIST.load(folder / "data" / "raw", data)
        load_times.append(time.perf_counter() - start)
        assert dataset.images.shape == (60_000 // SCALE["divisor"], 28, 28, 1)
        params = validate(raw, sections=["data"])
        start = time.perf_counter()
        ingest.prepare(params.data, Layout(folder))
        prepare_times.append(time.perf_counter() - start)
    print(f"MNIST-sized IDX ({size / 1e6:.1f} MB gzip'd, {70_000 // SCALE['divisor']:,} images):")
    print(f"  parse the 4 files (MNIST.load):        best {min(load_times):.2f} s "
          f"of {', '.join(f'{t:.2f}' for t in load_times)}")
    print(f"  prepare (parse, check, write .npy):    best {min(prepare_times):.2f} s "
          f"of {', '.join(f'{t:.2f}' for t in prepare_times)}   target < 2 s")


def write_cifar(folder: Path) -> None:
    rng = np.random.default_rng(0)
    batches = folder / "data" / "raw" / cifar10.FOLDER
    batches.mkdir(parents=True)
    for name in (*cifar10.TRAIN_FILES, *cifar10.TEST_FILES):
        records = 10_000 // SCALE["divisor"]
        images = rng.integers(0, 256, (records, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, records)
        (batches / name).write_bytes(cifar10.to_records(images, labels))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["dataset"] = "cifar10"
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def peak_rss_mb(args: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DVC_ROOT": str(cwd)}
    process = subprocess.Popen(args, cwd=cwd, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(args)} failed with exit code {process.returncode}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def bench_cifar(folder: Path) -> None:
    write_cifar(folder)
    print(f"CIFAR-10-sized binary batches ({60_000 // SCALE['divisor']:,} x 32 x 32 x 3):")
    for stage in ("prepare", "split"):
        rss = peak_rss_mb([sys.executable, "-m", f"stages.{stage}"], folder)
        print(f"  peak RSS of stages.{stage}: {rss:,.0f} MB   target < 1,024 MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1/100 of the sizes: checks that the script runs (make test)")
    if parser.parse_args().quick:
        SCALE.update(divisor=100, repeats=1)
    with tempfile.TemporaryDirectory() as mnist_dir, tempfile.TemporaryDirectory() as cifar_dir:
        bench_mnist(Path(mnist_dir))
        bench_cifar(Path(cifar_dir))


if __name__ == "__main__":
    main()
