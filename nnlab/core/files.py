"""Files: where the project is, hashing, stable atomic writers, and reads that name a
corrupt file.

Stable bytes (`\n` line endings, sorted keys) keep DVC hashes stable; the atomic rename means a
crash never leaves a half-written file that looks valid.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nnlab.core.errors import DataFormatError

RESTORE = "restore it with `dvc checkout`, or rebuild it with `dvc repro`"


def project_root() -> Path:
    """The repository root: DVC_ROOT when DVC runs us (`dvc exp run --queue/--temp` run stages
    in a temporary copy), else the nearest folder up with a `.dvc` dir, else the working
    directory."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return here


def sha256(*paths: Path) -> str:
    """Hex SHA-256 of the files' bytes, one after the other, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def reading(path: Path, what: str, fix: str = RESTORE) -> Iterator[None]:
    """Turn any failure to parse `path` (truncated, corrupt, wrong format) into one
    DataFormatError that names the file, what it should hold and how to get it back.

    A missing file stays a FileNotFoundError; callers say how to create it.
    """
    try:
        yield
    except (FileNotFoundError, DataFormatError):
        raise
    except Exception as error:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise DataFormatError(
            f"{path}: {what} is truncated or corrupt ({type(error).__name__}: {reason}); {fix}"
        ) from None


def load_npy(path: Path, mmap: bool = False, fix: str = RESTORE) -> NDArray[Any]:
    """A .npy array (never unpickled), optionally memory-mapped, or one clear error."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `dvc repro` to create it")
    with reading(path, "the NumPy array", fix):
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def load_npz(path: Path, what: str, fix: str = RESTORE) -> dict[str, NDArray[Any]]:
    """Every array of a .npz archive (never unpickled), or one clear error."""
    with reading(path, what, fix), np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A `<name>.part` sibling to write to; renamed onto `path` only if the block succeeds.

    On an error the `.part` is removed, so nothing half-written is ever left behind; a write
    the disk refuses (full, over a size limit) names `path`, which a bare write() error does
    not.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        yield part
    except OSError as error:
        part.unlink(missing_ok=True)
        if error.filename is None and error.errno is not None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as part, open(part, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `dvc repro` to create it")
    with reading(path, "the JSON file"):
        return json.loads(path.read_text(encoding="utf-8"))


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
