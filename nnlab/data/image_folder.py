"""A folder of class subfolders (`root/cat/*.jpg`, `root/dog/*.jpg`), as in cats vs dogs.

`download` records what is in the folder (`data/raw/manifest.json`: every file with its
size and SHA-256), so the DVC-tracked manifest changes whenever the images do. `load` reads
the listed files with Pillow, converts them to RGB (L with `data.grayscale`) and resizes
them to `data.image_size` squared. Files Pillow cannot read (corrupt JPEGs, stray text
files) are skipped and reported; they never stop the run.

A large folder is decoded on every core (Pillow decodes and resizes outside the GIL), in
threads that write straight into the output array, in the manifest's order: the result is the
same as one thread's, and memory is the output arrays plus an image in flight per thread.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from nnlab.arrays.contract import RawDataset, check_memory
from nnlab.core.files import project_root, read_json, write_json
from nnlab.data import fetch

if TYPE_CHECKING:
    from nnlab.data.section import DataParams

MANIFEST = "manifest.json"
PARALLEL_FROM = 256  # images: a smaller folder is read by one thread
PROGRESS_FROM = 2000  # images: a larger folder reports its progress
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
              Image.DecompressionBombWarning)


def workers() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)


def _root(data: DataParams) -> Path:
    if data.source is None or fetch.is_url(data.source):
        raise ValueError(
            f"data.source={data.source!r}: image_folder needs a local folder of class "
            "subfolders, e.g. -S data.source=/path/to/cats_vs_dogs (holding cat/ and dog/)"
        )
    root = fetch.local_path(data.source)
    if not root.is_dir():
        raise FileNotFoundError(f"data.source={data.source!r}: {root} is not a folder")
    return root


WATCHED = "images"  # the folder dvc.yaml's download stage depends on (images/README.md)


def download(raw_dir: Path, data: DataParams) -> None:
    """List every file under each class subfolder (hidden files and folders excluded)."""
    root = _root(data)
    watched = project_root() / WATCHED
    if not root.resolve().is_relative_to(watched.resolve()):
        print(f"download: note: data.source={data.source!r} is outside {WATCHED}/, which DVC "
              f"does not watch: after adding or changing images run `dvc repro -f download`, "
              f"or move the folder to {WATCHED}/ and point data.source at it",
              file=sys.stderr)
    classes = sorted(
        entry.name for entry in root.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise ValueError(f"{root}: no class subfolders; expected e.g. {root}/cat/*.jpg")
    files = []
    for name in classes:
        for path in sorted((root / name).rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                files.append({
                    "path": relative.as_posix(),
                    "class": name,
                    "bytes": path.stat().st_size,
                    "sha256": fetch.sha256(path),
                })
    write_json(raw_dir / MANIFEST, {
        "dataset": "image_folder",
        "source": str(root.resolve()),
        "classes": classes,
        "files": files,
    })


def load(raw_dir: Path, data: DataParams) -> RawDataset:
    manifest = read_json(raw_dir / MANIFEST)
    root = _root(data)
    mode = "L" if data.grayscale else "RGB"
    side = data.image_size
    entries = manifest["files"]
    shape = (len(entries), side, side, 1 if data.grayscale else 3)
    check_memory(shape, f"data.image_size={side}", "lower data.image_size")
    images = np.empty(shape, dtype=np.uint8)
    paths = [root / entry["path"] for entry in entries]
    readable = np.ones(len(entries), dtype=bool)
    skipped = []
    for index, error in enumerate(_read_all(paths, mode, side, images)):
        if error is not None:
            readable[index] = False
            skipped.append(f"{paths[index]}\t{type(error).__name__}: {error}")
    kept = np.flatnonzero(readable)
    count = len(kept)
    for target, source in enumerate(kept if count < len(entries) else ()):
        images[target] = images[source]  # close the gaps in place: no second array
    index_of = {name: number for number, name in enumerate(manifest["classes"])}
    labels = np.array([index_of[entries[source]["class"]] for source in kept], dtype=np.int64)
    found = {manifest["classes"][number] for number in np.unique(labels)}
    empty = [name for name in manifest["classes"] if name not in found]
    skipped += [f"{root / name}/\tno readable image: class left out" for name in empty]
    classes = [name for name in manifest["classes"] if name in found]
    if len(classes) < 2:
        raise ValueError(
            f"{root}: {len(classes)} class folder(s) hold a readable image; image_folder "
            "needs at least 2 (e.g. cat/ and dog/ with .jpg or .png files)"
        )
    # Renumber labels to the classes that survived, in folder-name order.
    remap = np.array([classes.index(name) if name in found else -1
                      for name in manifest["classes"]], dtype=np.int64)
    return RawDataset(
        images=images[:count], labels=remap[labels], classes=classes, skipped=skipped,
        left_out=empty
    )


def _read_all(paths: list[Path], mode: str, side: int, out: np.ndarray
              ) -> Iterator[BaseException | None]:
    """Read each image into its row of `out` (N, side, side, C); yield, in order, what made
    it unreadable or None. On every core for a large folder, with a progress line every tenth
    for a very large one."""
    def read(index: int) -> BaseException | None:
        try:
            out[index] = decode_image(paths[index], mode, side).reshape(out.shape[1:])
        except UNREADABLE as error:
            return error
        return None

    with warnings.catch_warnings():  # for every thread: the filters are the process's
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        threads = workers() if len(paths) >= PARALLEL_FROM else 1
        if threads == 1:
            yield from _reporting(map(read, range(len(paths))), len(paths))
            return
        pool = ThreadPoolExecutor(threads, thread_name_prefix="prepare")
        try:
            yield from _reporting(pool.map(read, range(len(paths))), len(paths), threads)
        finally:  # a stop (Ctrl-C) waits for the images in flight, not for the whole folder
            pool.shutdown(wait=True, cancel_futures=True)


def _reporting(results: Iterable[Any], total: int, threads: int = 1) -> Iterator[Any]:
    """`results`, and a line on stderr at each tenth of a long read."""
    began, step = time.monotonic(), max(1, total // 10)
    for done, result in enumerate(results, 1):
        if total >= PROGRESS_FROM and (done % step == 0 or done == total):
            print(f"prepare: read {done:,} of {total:,} images ({done / total:.0%}) in "
                  f"{time.monotonic() - began:.0f} s on {threads} thread(s)", file=sys.stderr,
                  flush=True)
        yield result


def read_image(path: Path, mode: str, side: int) -> np.ndarray:
    """One image as uint8 (side, side[, channels]); raises what Pillow raises if unreadable."""
    with warnings.catch_warnings():
        # A truncated JPEG raises OSError in load(); an absurdly large one is refused too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return decode_image(path, mode, side)


def decode_image(path: Path | Any, mode: str, side: int) -> np.ndarray:
    """read_image without its warning filter (the caller sets it, once for every thread, or
    checks the image's size itself, as `nnlab serve` does). Turned upright by its EXIF
    Orientation: prepare, `nnlab predict` and `nnlab serve` all read images here."""
    with Image.open(path) as image:
        image.load()
        # A phone photo is stored as the sensor saw it, with an EXIF Orientation that says
        # how to turn it upright: turned here, as a viewer shows it.
        upright = ImageOps.exif_transpose(image)
        eight_bit = to_eight_bits(upright)
        converted = eight_bit if eight_bit.mode == mode else eight_bit.convert(mode)
        resized = converted.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # 16-bit, 32-bit, float pixels


def to_eight_bits(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float grey image as 8-bit grey, scaled the way image viewers show
    it: 0..65535 to 0..255 for integers (Pillow's own convert("L") clips at 255 instead, so
    a 16-bit digit would come out a white blot), 0..1 to 0..255 for floats that stay in it.
    Other modes pass unchanged."""
    if image.mode not in WIDE_MODES:
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0
    scaled = np.clip(np.nan_to_num(values * scale), 0, 255)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
