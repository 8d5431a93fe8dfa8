"""What watching `images/` costs DVC (issue 19): 5,000 small PNGs in an image folder under
images/, as dvc.yaml's download stage depends on it.

Measured in a throw-away project, one after the other:
1. `dvc repro download` with the 5,000 images: DVC hashes the folder for dvc.lock, and the
   stage lists every file with its SHA-256;
2. `dvc status download`, nothing changed (DVC's state cache: a scan, no hashing);
3. the same after one image was added (only the new file is hashed);
4. the same after every file was touched (new mtimes: DVC hashes all 5,000 again);
5. `dvc status split`, which scans no image folder: DVC's own start-up, for reference.

    python benchmarks/image_folder_dep.py [--images 5000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support, run from anywhere

from tests.support.e2e import make_project, run  # noqa: E402


def timed(args: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    run(args, cwd)
    return time.perf_counter() - began


def write_digits(folder: Path, count: int) -> int:
    """`count` 28x28 grey PNGs in 10 class folders; returns their total bytes."""
    rng = np.random.default_rng(0)
    total = 0
    for index in range(count):
        path = folder / str(index % 10) / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.zeros((28, 28), np.uint8)
        pixels[6:22, 6:22] = rng.integers(0, 256, (16, 16), dtype=np.uint8)
        Image.fromarray(pixels, "L").save(path)
        total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--quick", action="store_true",
                        help="50 images: checks that the script runs (make test); no figures")
    args = parser.parse_args()
    if args.quick:
        args.images = 50
    work = Path(tempfile.mkdtemp(prefix="images-bench-"))
    try:
        project = make_project(work / "project", {"data": {
            "dataset": "image_folder", "source": "images/digits", "image_size": 28,
            "grayscale": True}})
        size = write_digits(project / "images" / "digits", args.images)
        listed = timed(["dvc", "repro", "download"], project)
        unchanged = timed(["dvc", "status", "download"], project)
        shutil.copyfile(project / "images/digits/0/00000.png",
                        project / "images/digits/0/extra.png")
        added = timed(["dvc", "status", "download"], project)
        for path in (project / "images").rglob("*.png"):  # new mtimes: DVC must rehash all
            os.utime(path)
        rehashed = timed(["dvc", "status", "download"], project)
        reference = timed(["dvc", "status", "split"], project)  # no image folder to scan
        print(f"{args.images:,} PNGs, {size / 1e6:.1f} MB, under images/:")
        print(f"  dvc repro download: DVC hashes the folder, download "
              f"lists and hashes every file: {listed:5.1f} s")
        print(f"  dvc status download, nothing changed:               {unchanged:5.1f} s")
        print(f"  dvc status download, one image added:               {added:5.1f} s")
        print(f"  dvc status download, every file touched (rehash):   {rehashed:5.1f} s")
        print(f"  dvc status split (DVC's start-up, no folder):       {reference:5.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
