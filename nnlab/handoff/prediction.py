"""`nnlab predict`: class probabilities for image files, with the training preprocessing,
from a workspace's model folder or from MLflow (`models:/NAME@champion`).

The model folder's train_info.json records the input shape (H, W, C) and the class names the
model was trained on. An image is read with Pillow, converted to grey (C = 1) or RGB (C = 3)
and resized to W x H exactly as `image_folder` does in `prepare`; the model then scales the
uint8 pixels to [0, 1] itself, as in training.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import UnidentifiedImageError

from nnlab.core.files import read_json
from nnlab.core.layout import TRAIN_INFO_FILE
from nnlab.data.image_folder import read_image
from nnlab.models.base import load_predictor, saved_environment


@dataclass(frozen=True)
class Prediction:
    image: str
    top: list[tuple[str, float]]  # (class name, probability), most likely first

    def as_dict(self) -> dict[str, object]:
        return {
            "image": self.image,
            "top": [{"class": name, "probability": round(probability, 6)}
                    for name, probability in self.top],
        }


def image_paths(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(named files, files found in named folders): folders are searched recursively, in
    sorted order, hidden files left out. A named path that does not exist is an error."""
    named, found = [], []
    for path in paths:
        if path.is_dir():
            found += sorted(item for item in path.rglob("*") if item.is_file()
                            and not any(part.startswith(".") for part in
                                        item.relative_to(path).parts))
        elif path.is_file():
            named.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return named, found


def read_images(
    paths: list[Path], input_shape: tuple[int, int, int], skip_unreadable: bool
) -> tuple[list[Path], np.ndarray, list[tuple[Path, str]]]:
    """The readable images as (N, H, W, C) uint8 with their paths, and the skipped files
    with the reason. Unless `skip_unreadable`, the first unreadable file is a one-line error."""
    height, width, channels = input_shape
    if channels not in (1, 3) or height != width:
        raise ValueError(
            f"the model takes {height}x{width}x{channels} inputs, not images; "
            "predict works for models trained on image datasets"
        )
    kept, pixels, skipped = [], [], []
    for path in paths:
        try:
            image = read_image(path, "L" if channels == 1 else "RGB", height)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            reason = f"not a readable image ({' '.join(str(error).split())})"
            if not skip_unreadable:
                raise ValueError(f"{path}: {reason}") from None
            skipped.append((path, reason))
            continue
        kept.append(path)
        pixels.append(image.reshape(height, width, channels))
    batch = np.stack(pixels) if pixels else np.empty((0, height, width, channels), np.uint8)
    return kept, batch, skipped


def predict(
    model_dir: Path, paths: list[Path], top: int = 3, plot: Path | None = None
) -> tuple[list[Prediction], list[tuple[Path, str]]]:
    """The `top` most likely classes of each image, for the model saved in `model_dir`, and
    the files skipped with the reason; with `plot`, a PNG of each image beside its
    probabilities as bars (nnlab/evaluation/bars.py).

    `paths` are image files or folders of them. A named file that is missing or unreadable
    is an error; inside a folder, files that are not readable images are skipped.
    """
    model_name = model_dir.name
    info_path = model_dir / TRAIN_INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(
            f"{model_dir}: no trained {model_name} model; run `dvc repro` first"
        )
    info = read_json(info_path)
    if "input_shape" not in info or "classes" not in info:
        raise ValueError(f"{model_dir}: saved by an older nnlab; run `dvc repro` to retrain it")

    def load() -> Callable[[np.ndarray], np.ndarray]:
        os.environ.update(saved_environment(info))  # the backend it trained on
        return load_predictor(info.get("model", model_name), model_dir)

    return _predict(info["classes"], tuple(info["input_shape"]), load, paths, top, plot)


def registered_metadata(uri: str) -> dict[str, Any]:
    """The MLmodel metadata of a model in MLflow (`models:/NAME@alias`, `models:/NAME/3`,
    `models:/<model id>`), checked to carry its class names and input shape; MLflow is
    pointed at the project's tracking URI."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from nnlab.tracking import mlflow_runs

    mlflow_runs.quiet_mlflow()
    mlflow.set_tracking_uri(mlflow_runs.tracking_uri())
    try:
        metadata: dict[str, Any] = mlflow.models.get_model_info(uri).metadata or {}
    except (MlflowException, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(f"{uri}: not found in {mlflow_runs.tracking_uri()} ({first}); "
                         "`nnlab promote` registers a model, or check MLFLOW_TRACKING_URI"
                         ) from None
    if "input_shape" not in metadata or "classes" not in metadata:
        raise ValueError(f"{uri}: logged by an older nnlab, without its classes and input "
                         "shape; promote a model trained since")
    return metadata


def registered_predictor(uri: str) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 images (N, H, W, C) -> probabilities (N, n_classes) for a model in MLflow, at
    the model's own speed: a Keras model through its compiled predict function
    (nnlab/models/keras/inference.py, not the flavor's `model.predict()` per call), an ONNX
    model (`nnlab export`) in onnxruntime, the others through their pyfunc (the project's
    own loader and predict_proba). Same probabilities as the pyfunc (1e-5)."""
    import mlflow

    flavors = mlflow.models.get_model_info(uri).flavors
    if "onnx" in flavors:
        import mlflow.onnx
        import onnxruntime

        session = onnxruntime.InferenceSession(mlflow.onnx.load_model(uri).SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda images: session.run(None, {name: np.asarray(images, np.uint8)})[0]
    if "keras" in flavors:
        import mlflow.keras

        from nnlab.models.keras.inference import Predictor

        return Predictor(mlflow.keras.load_model(uri, load_model_kwargs={"safe_mode": True}),
                         xla=True)
    model = mlflow.pyfunc.load_model(uri)
    return lambda images: np.asarray(model.predict(np.asarray(images, np.uint8)))


def predict_registered(
    uri: str, paths: list[Path], top: int = 3, plot: Path | None = None
) -> tuple[list[Prediction], list[tuple[Path, str]]]:
    """As `predict`, for a model in MLflow: the class names and input shape come with it
    (registered_metadata), so nothing of the workspace is needed, only
    MLFLOW_TRACKING_URI."""
    metadata = registered_metadata(uri)
    return _predict(list(metadata["classes"]), tuple(metadata["input_shape"]),
                    lambda: registered_predictor(uri), paths, top, plot)


def _predict(classes: list[str], shape: tuple[int, ...],
             load: Callable[[], Callable[[np.ndarray], np.ndarray]], paths: list[Path],
             top: int, plot: Path | None = None
             ) -> tuple[list[Prediction], list[tuple[Path, str]]]:
    named, found = image_paths(paths)
    height, width, channels = (int(size) for size in shape)
    kept, images, _ = read_images(named, (height, width, channels), skip_unreadable=False)
    kept_found, found_images, skipped = read_images(found, (height, width, channels),
                                                    skip_unreadable=True)
    if not kept and not kept_found:
        folders = ", ".join(str(path) for path in paths if path.is_dir())
        raise ValueError(f"{folders}: no readable image in the folder "
                         f"({len(skipped)} other file(s) skipped)")
    every = np.concatenate([images, found_images])
    probabilities = load()(every)
    predictions = []
    for path, row in zip(kept + kept_found, probabilities, strict=True):
        order = np.argsort(-row, kind="stable")[:top]
        predictions.append(
            Prediction(str(path), [(classes[index], float(row[index])) for index in order])
        )
    if plot is not None:
        try:
            _draw(plot, kept + kept_found, every, probabilities, classes)
        except OSError as error:
            raise Unplotted(predictions, skipped, f"{plot}: the plot was not written "
                            f"({' '.join(str(error.strerror or error).split())}); the "
                            "predictions above are complete") from None
    return predictions, skipped


class Unplotted(Exception):
    """The predictions were made, the plot could not be written: the caller shows both."""

    def __init__(self, predictions: list[Prediction], skipped: list[tuple[Path, str]],
                 reason: str) -> None:
        super().__init__(reason)
        self.predictions, self.skipped = predictions, skipped


def _draw(plot: Path, files: list[Path], images: np.ndarray, probabilities: np.ndarray,
          classes: list[str]) -> None:
    """The --plot picture, in an existing folder: a mistyped folder is an error, not a new
    tree of folders."""
    from nnlab.evaluation.bars import MAX_PANELS, probabilities_png

    if not plot.parent.is_dir():
        raise FileNotFoundError(2, f"no folder {plot.parent}: create it, or give another "
                                "--plot")
    probabilities_png(plot, images[:MAX_PANELS], probabilities[:MAX_PANELS], classes,
                      "nnlab predict" + (f": the first {MAX_PANELS} of {len(files)} images"
                                         if len(files) > MAX_PANELS else ""),
                      names=[path.name for path in files[:MAX_PANELS]])
