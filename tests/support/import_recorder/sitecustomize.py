"""Loaded by every Python process started with this folder on PYTHONPATH (tests/support/e2e.py
does so for the shared baseline's `dvc repro`). In a DVC stage (DVC_STAGE is set) it writes,
at exit, the project files the process imported, to $NNLAB_IMPORT_LOG/<stage>.json:
tests/e2e/test_rerun_scope.py compares them with what `dvc status` reruns."""

import atexit
import json
import os
import sys
from pathlib import Path


def _record() -> None:
    root = Path.cwd().resolve()
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        try:
            relative = Path(path).resolve().relative_to(root)
        except ValueError:
            continue
        if relative.parts[0] in ("nnlab", "stages"):
            files.add(relative.as_posix())
    record = {"files": sorted(files),
              "tensorflow": any(name.partition(".")[0] in ("tensorflow", "keras")
                                for name in sys.modules),
              "tensorflow_itself": "tensorflow" in sys.modules,  # not Keras on JAX
              "jax": "jax" in sys.modules}
    folder = Path(os.environ["NNLAB_IMPORT_LOG"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{os.environ['DVC_STAGE']}.json").write_text(json.dumps(record, indent=1))


if os.environ.get("NNLAB_IMPORT_LOG") and os.environ.get("DVC_STAGE"):
    atexit.register(_record)
