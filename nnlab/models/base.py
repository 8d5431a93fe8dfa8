"""The contract every model follows, and two plain functions: `new_model(name, params,
seed)`, an untrained model of a params.yaml key (its class from nnlab/core/catalog.py), and
`load_model(folder)`, a trained one from its files.

Models take uint8 images (N, H, W, C) as stored by the data contract and scale them
themselves, so training, evaluation and prediction all share one preprocessing path.
Model classes are imported by name: asking for `numpy_dnn` never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np
from numpy.typing import NDArray

from nnlab.arrays.chunks import chunk_rows, chunks
from nnlab.arrays.contract import Split, to_features
from nnlab.core.catalog import MODELS, load
from nnlab.core.files import atomic_path, load_npz, read_json, reading
from nnlab.core.layout import TRAIN_INFO_FILE
from nnlab.models import portable

History = list[dict[str, float]]  # one row per epoch: epoch, loss, accuracy, val_loss, ...
# Called with each epoch's history row as soon as it is known (a sweep's pruning reports
# val_accuracy through it, and may raise nnlab.core.errors.Pruned to stop training).
EpochHook = Callable[[dict[str, float]], None]


class Checkpoint(Protocol):
    """Where a model with epochs keeps its state at the end of each epoch, so that training
    stopped at any moment goes on from its last checkpoint (nnlab/training/checkpoints.py)."""

    def saved(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]] | None:
        """(plain arrays, JSON-able values) that `save` was given, or None: start afresh."""

    def save(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        """Keep this state (written atomically: a stop mid-write leaves the previous one)."""


class ImageClassifier:
    """Base class: fit on uint8 images, predict class probabilities, save and load."""

    # How logged_model.log_model logs it: "pyfunc" (nnlab/models/portable.py over the saved
    # model.npz, runnable without nnlab) or "keras" (the Keras flavor, from
    # `probability_model()`).
    flavor = "pyfunc"

    def __init__(self, params: Any, seed: int) -> None:
        self.params = params
        self.seed = seed

    def fit(self, train: Split, val: Split, n_classes: int,
            on_epoch: EpochHook | None = None, checkpoint: Checkpoint | None = None) -> History:
        """Train on `train`, monitor on `val`; return the per-epoch history. `on_epoch` gets
        each epoch's row as it ends (models without epochs never call it). A model with
        epochs goes on from `checkpoint.saved()` if there is one, and saves its state there
        at the end of each epoch, before `on_epoch`; the result equals an unstopped run."""
        raise NotImplementedError

    def predict_proba(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Class probabilities (N, n_classes) for uint8 images (N, H, W, C)."""
        raise NotImplementedError

    def count_params(self) -> int:
        raise NotImplementedError

    def runtime(self) -> dict[str, str]:
        """What computed the last fit: its `backend` (the engine) and `device` ("cpu", or
        "gpu: <name>"), for the console, train_info.json and the MLflow run."""
        return {"backend": "numpy", "device": "cpu"}

    def trained_on(self) -> str:
        """Where the last fit trained, part by part when it resumed from a checkpoint
        elsewhere ("epochs 1-10 on 2 x cpu; epochs 11-30 on 2 x gpu: ..."), for the run."""
        return self.runtime()["device"]

    def save(self, directory: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path) -> ImageClassifier:
        raise NotImplementedError

    @classmethod
    def restored(cls, **state: Any) -> Self:
        """A model that `load` rebuilt from its files: it predicts, where the process computes,
        and never trains, so it has no params (its saved files hold its shape). `state`: the
        attributes its predictions need (the network, the input shape...)."""
        model = cls.__new__(cls)
        model.params, model.seed = None, 0
        for name, value in state.items():
            setattr(model, name, value)
        return model


ARRAYS_FILE = "model.npz"  # numpy_dnn and logreg: their weights as plain arrays


class FeatureClassifier(ImageClassifier):
    """A classifier saved as plain arrays (numpy_dnn, numpy_cnn, logreg): `self.model` is the
    trained estimator, anything with `predict_proba(inputs)`, or None before fit/load.
    `inputs` turns the stored images into what the estimator takes: flattened pixels here."""

    name: str  # the params.yaml key

    def __init__(self, params: Any, seed: int) -> None:
        super().__init__(params, seed)
        self.model: Any = None

    def _trained(self) -> Any:
        if self.model is None:
            raise RuntimeError(f"{self.name}: fit() or load() the model first")
        return self.model

    @staticmethod
    def inputs(images: NDArray[np.uint8]) -> NDArray[np.float32]:
        return to_features(images)

    def bytes_per_image(self, image_shape: tuple[int, ...]) -> int:
        """What one more image costs a prediction: its features as float32, and the
        estimator's copy of them (the NumPy networks measure their own layers)."""
        return 2 * 4 * int(np.prod(image_shape))

    def predict_proba(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        """In chunks sized by the working-memory budget (nnlab/arrays/chunks.py): the images'
        float copies and the network's activations never grow with the set. A set that fits
        in one chunk is one call, as before."""
        model = self._trained()
        rows = chunk_rows(self.bytes_per_image(tuple(images.shape[1:])))
        if len(images) <= rows:
            return np.asarray(model.predict_proba(self.inputs(images)), np.float32)
        return np.concatenate([
            np.asarray(model.predict_proba(self.inputs(images[part])), np.float32)
            for part in chunks(len(images), rows)])

    def _save_arrays(self, directory: Path, arrays: dict[str, NDArray[Any]]) -> None:
        # Plain arrays instead of a pickle: loading a model never executes code.
        save_arrays(directory / ARRAYS_FILE, arrays)

    @classmethod
    @contextlib.contextmanager
    def _loading(cls, directory: Path) -> Iterator[dict[str, NDArray[Any]]]:
        """The saved arrays; anything that fails while the `with` block rebuilds the model
        from them becomes one error naming the file and the fix."""
        path = trained_file(directory, ARRAYS_FILE, cls.name)
        arrays = load_npz(path, f"the {cls.name} model", RESTORE_MODEL)
        with reading(path, f"the {cls.name} model", RESTORE_MODEL):
            yield arrays


RESTORE_MODEL = "restore it with `dvc checkout`, or retrain it with `dvc repro`"


def trained_file(directory: Path, filename: str, model_name: str) -> Path:
    """The saved model file, or a FileNotFoundError that says how to create it."""
    path = directory / filename
    info = directory / "train_info.json"
    if not path.is_file() and info.is_file() and json.loads(info.read_text("utf-8")).get("pruned"):
        raise FileNotFoundError(f"{directory}: a sweep trial that was pruned, so it has no "
                                f"weights; `dvc repro -f train@{model_name}` trains a model")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained {model_name} model; run `dvc repro` first")
    return path


def save_arrays(path: Path, arrays: dict[str, NDArray[Any]]) -> None:
    """Write plain arrays (no pickles) to an .npz, atomically."""
    with atomic_path(path) as part, open(part, "wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)


Inference = Callable[[NDArray[np.uint8]], NDArray[np.float32]]


def model_class(name: str) -> type[ImageClassifier]:
    """The classifier class of a params.yaml model key (its family's module imported now), or
    a ValueError naming the valid keys."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    found: type[ImageClassifier] = load(MODELS[name].classifier)
    return found


def new_model(name: str, params: Any, seed: int, process: int = 0) -> ImageClassifier:
    """An untrained model of params.yaml's `name`, from its section's validated params;
    `process`: which of the section's `processes` this one is, when several train it together
    (the Keras models on JAX: nnlab/models/keras/cluster.py).

    A family reads its backend from the process environment as it is imported (Keras's
    KERAS_BACKEND): the process that trains sets `params.environment()` before this call."""
    return model_class(name)(params, seed, **({"process": process} if process else {}))


def saved_name(folder: Path) -> str:
    """The model key a trained folder holds (its train_info.json), or how to train one."""
    info = folder / TRAIN_INFO_FILE
    if not info.is_file():
        raise FileNotFoundError(f"{folder}: no trained model (no {TRAIN_INFO_FILE}); run "
                                "`dvc repro` first")
    name = read_json(info).get("model")
    if not isinstance(name, str):
        raise ValueError(f"{info}: names no model; {RESTORE_MODEL}")
    return name


def saved_environment(info: Mapping[str, Any]) -> dict[str, str]:
    """The process environment a model was trained with (Keras's backend), from its
    train_info.json as the caller read it: what a process sets before `load_model`
    (evaluate, `nnlab predict`)."""
    environment = info.get("environment") or {}
    return {str(key): str(value) for key, value in environment.items()}


def load_model(folder: Path, name: str | None = None) -> ImageClassifier:
    """The trained model saved in `folder`, ready to predict: the model its train_info.json
    names, or `name`. Set its `saved_environment` in the process first."""
    return model_class(name or saved_name(folder)).load(folder)


def load_predictor(name: str, directory: Path) -> Inference:
    """uint8 images (N, H, W, C) -> class probabilities, for the model saved in `directory`:
    what evaluate, `nnlab predict` and `nnlab serve` run. A model saved as plain arrays runs
    in nnlab/models/portable.py, the very code its logged MLflow model runs; a Keras model
    in its own classifier (set its `saved_environment` in the process first)."""
    if model_class(name).flavor != "pyfunc":
        return load_model(directory, name).predict_proba
    path = trained_file(directory, ARRAYS_FILE, name)  # none: how to make one (`dvc repro`)
    # Read and checked as every nnlab file is (a corrupt one names the file and the fix);
    # the arrays are then portable.py's.
    arrays = load_npz(path, f"the {name} model", RESTORE_MODEL)
    try:
        return portable.from_arrays(arrays, path).predict_proba
    except portable.ModelFileError as error:
        raise portable.ModelFileError(f"{error}; {RESTORE_MODEL}") from None
