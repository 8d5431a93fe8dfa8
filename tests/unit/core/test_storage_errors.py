"""core/errors.py's storage_problem: a write the disk refuses, found through the exception
chain, named in one line with its file and its fix."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from nnlab.core.errors import storage_problem


def test_a_size_limit_names_the_file(tmp_path: Path) -> None:
    """A real EFBIG: a child process under RLIMIT_FSIZE saves a model's arrays."""
    code = (
        "import resource, numpy as np\n"
        "from pathlib import Path\n"
        "from nnlab.core.errors import storage_problem\n"
        "from nnlab.models.base import save_arrays\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))\n"
        "try:\n"
        f"    save_arrays(Path({str(tmp_path / 'model.npz')!r}), {{'W': np.zeros(100_000)}})\n"
        "except Exception as error:\n"
        "    print(storage_problem(error))\n")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120).stdout.strip()
    assert "file too large (over the file-size limit): the write failed" in output, output
    assert str(tmp_path) in output and "raise the file-size limit" in output
    assert not (tmp_path / "model.npz").exists()  # the atomic write left nothing


def test_a_read_only_database_is_found_inside_the_chain(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    sqlite3.connect(database).execute("CREATE TABLE runs (id TEXT)").connection.commit()
    read_only = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        try:
            read_only.execute("INSERT INTO runs VALUES ('x')")
        except sqlite3.OperationalError as error:
            raise RuntimeError("the store said no") from error
    except RuntimeError as wrapped:
        problem = storage_problem(wrapped)
    assert problem is not None and "attempt to write a readonly database" in problem
    assert "make mlflow.db and its folder writable" in problem


def test_other_errors_are_not_storage_problems() -> None:
    assert storage_problem(ValueError("bad value")) is None
    assert storage_problem(FileNotFoundError(2, "No such file", "x")) is None
