"""Helpers for unit tests: the repository root, learnable synthetic images, and params built
from params.yaml (the only home of default values) with a few values changed."""

from __future__ import annotations

import copy
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray
from PIL import Image

from nnlab.core.schema import Params
from nnlab.params import validate

ROOT = Path(__file__).resolve().parents[2]
# Set (e.g. to "jax"): every params built here trains the Keras models on that backend, and
# tests/conftest.py makes it Keras's backend before anything imports Keras.
KERAS_BACKEND_UNDER_TEST = "NNLAB_TEST_KERAS_BACKEND"


def make_images(
    n_per_class: int, n_classes: int, shape: tuple[int, int, int] = (8, 8, 1), seed: int = 0
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Learnable synthetic images: each class lights up its own block of pixels, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class).astype(np.int64)
    images = rng.integers(0, 60, size=(labels.shape[0], *shape)).astype(np.uint8)
    flat = images.reshape(labels.shape[0], -1)
    block = flat.shape[1] // n_classes
    for index, label in enumerate(labels):
        flat[index, label * block : (label + 1) * block] += 180
    return images, labels


_PROJECT_PARAMS: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())


def raw_params(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """params.yaml as plain data, with `changes` merged in: {"numpy_dnn": {"epochs": 3}}
    changes one key of a section, {"seed": 7} a top-level key."""
    raw = copy.deepcopy(_PROJECT_PARAMS)
    backend = os.environ.get(KERAS_BACKEND_UNDER_TEST)
    if backend:  # the Keras tests again on another backend (tests/unit/models/test_backends.py)
        for name in ("keras_mlp", "cnn"):
            raw[name]["backend"] = backend
    for key, value in (changes or {}).items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def project_params(changes: dict[str, Any] | None = None) -> Params:
    """params.yaml with `changes` merged in, every section validated."""
    return validate(raw_params(changes))


def section(name: str, **changes: Any) -> Any:
    """One validated section of params.yaml with `changes`, e.g.
    section("data", dataset="image_folder")."""
    return project_params({name: changes}).section(name)


def png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def make_image_folder(root: Path, per_class: int = 3) -> Path:
    """cat/ and dog/ PNGs, a corrupt JPEG, a text file, and an empty class folder."""
    for index in range(per_class):
        png(root / "cat" / f"cat.{index}.png", (250, 10, 10))
        png(root / "dog" / f"dog.{index}.png", (10, 10, 250), size=(20, 50))
    good = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 255, 0)).save(good, format="JPEG")
    (root / "cat" / "broken.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (root / "dog" / "notes.txt").write_text("not an image\n")
    (root / "bird").mkdir()
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def data_section(**changes: Any) -> Any:
    """params.yaml's `data` section with `changes` (a nnlab.data.section.DataParams)."""
    return section("data", **changes)
