"""numba's compiled kernels are shared by every copy of the code with the same kernels.py
(nnlab/models/numpy/kernel_cache.py): a sweep trial's temporary workspace, a queued
experiment or a fresh clone loads them instead of compiling them again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import ROOT

SCRIPT = """
import json, numpy as np
from nnlab.models.numpy import kernels
param, grad = np.ones(4, np.float32), np.ones(4, np.float32)
kernels.sgd(param, grad, np.float32(0.5))
stats = kernels.sgd.stats
print(json.dumps({"file": kernels.__file__, "path": stats.cache_path, "param": param.tolist(),
                  "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def _run(copy: Path, env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=copy, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(copy), **env})
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_second_copy_of_the_code_loads_the_first_ones_compiled_kernels(tmp_path: Path) -> None:
    copies = []
    for name in ("first", "second"):
        copies.append(tmp_path / name)
        shutil.copytree(ROOT / "nnlab", copies[-1] / "nnlab",
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "NNLAB_CACHE_DIR": ""}
    first, second = (_run(copy, env) for copy in copies)
    assert first["file"] != second["file"]  # each copy's own kernels.py
    assert (first["misses"], first["hits"]) == (1, 0)  # compiled
    assert (second["misses"], second["hits"]) == (0, 1)  # loaded
    assert first["path"] == second["path"]
    assert str(first["path"]).startswith(str(tmp_path / "cache" / "nnlab" / "numba" / "kernels-"))
    assert first["param"] == second["param"] == [0.5] * 4
    assert not list((copies[0] / "nnlab").rglob("*.nbi"))  # nothing beside the source

    # Another kernels.py (an edit): its own folder, compiled again.
    kernels = copies[1] / "nnlab/models/numpy/kernels.py"
    kernels.write_text(kernels.read_text() + "\n# an edit\n")
    edited = _run(copies[1], env)
    assert edited["path"] != first["path"] and edited["misses"] == 1


def test_numba_cache_dir_set_by_the_user_is_left_to_numba(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "nnlab", copy / "nnlab", ignore=shutil.ignore_patterns("__pycache__"))
    found = _run(copy, {"NUMBA_CACHE_DIR": str(tmp_path / "numba"), "NNLAB_CACHE_DIR": ""})
    assert str(found["path"]).startswith(str(tmp_path / "numba"))
