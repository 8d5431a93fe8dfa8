"""A fresh virtualenv made from a logged model's own requirements.txt, as another team would
make one to load the model: nothing of nnlab's environment in it. Built once per distinct
requirements in a session, by uv from its cache; from the package registry when the cache
lacks a file, and the test is skipped, saying so, when the registry cannot be reached."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).is_file():
        pytest.skip("needs uv to build a model's environment (`make install` installs it)")
    return found


def model_env(requirements: Path, base: Path) -> Path:
    """The python of a virtualenv holding exactly `requirements` (under `base`, reused while
    its requirements are the same)."""
    text = requirements.read_text()
    folder = base / f"model-env-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    python = folder / "bin" / "python"
    ready = folder / "ready"  # written last: a folder without it is a build that stopped
    if ready.is_file():
        return python
    # Built where it stays: a venv's scripts name their interpreter by its absolute path.
    shutil.rmtree(folder, ignore_errors=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([uv(), "venv", "-q", "--python", version, str(folder)], check=True,
                   capture_output=True)
    install = [uv(), "pip", "install", "-q", "--python", str(python), "-r", str(requirements)]
    # uv's cache first; the registry only for what the cache lacks.
    done = subprocess.run([*install, "--offline"], capture_output=True, text=True)
    if done.returncode:
        done = subprocess.run(install, capture_output=True, text=True, timeout=900)
    if done.returncode:
        message = " ".join(done.stderr.split())[-400:]
        if "network" in message.lower() or "connect" in message.lower() or \
                "dns" in message.lower():
            pytest.skip(f"needs the package registry (PyPI) to install {requirements} "
                        f"into a fresh environment, and it cannot be reached: {message}")
        raise AssertionError(f"uv could not install {requirements}: {message}")
    ready.write_text(text)
    return python
