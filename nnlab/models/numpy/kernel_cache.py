"""Where numba keeps kernels.py's compiled loops: in the user's cache, in one folder per
content of the source file, so that every copy of a project shares them.

numba's own `cache=True` writes next to the source (`__pycache__`), so each new copy of the
code compiles again: every `dvc exp run --temp` trial of a sweep, every queued experiment
and every fresh clone. That cost about 0.8 s of a numpy_dnn train stage (numba compiling
the Adam update) and 0.8 s more for numpy_cnn's pooling and col2im loops. Here a copy with
the same kernels.py loads them: numba checks its index against the file's content hash,
which is also the folder's name.

The folder is nnlab/core/layout.py's `numba` (~/.cache/nnlab/numba by default). Where it
cannot be written, or where NUMBA_CACHE_DIR is set (the user chose a place), numba's own
locators decide as before. Only nnlab's files are placed here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from numba.core import caching, config

from nnlab.core.layout import user_cache

PACKAGE = Path(__file__).resolve().parents[2]  # nnlab/


class SharedCacheLocator(caching._SourceFileBackedLocatorMixin,
                         caching._CacheLocator):
    """numba's cache locator for nnlab's files, keyed by their content, not their path."""

    def __init__(self, py_func: Any, py_file: str) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        digest = hashlib.sha256(Path(py_file).read_bytes()).hexdigest()[:20]
        self._cache_path = str(user_cache("numba") / f"{Path(py_file).stem}-{digest}")

    def get_cache_path(self) -> str:
        return self._cache_path

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> SharedCacheLocator | None:
        path = Path(py_file).resolve()
        if getattr(config, "CACHE_DIR", "") or PACKAGE not in path.parents or not path.is_file():
            return None
        located: SharedCacheLocator | None = super().from_function(py_func, py_file)
        return located  # None where the folder cannot be written


def install() -> None:
    """Ask numba to try this locator first (for functions decorated after this call)."""
    if SharedCacheLocator not in caching.CacheImpl._locator_classes:
        caching.CacheImpl._locator_classes.insert(0, SharedCacheLocator)
