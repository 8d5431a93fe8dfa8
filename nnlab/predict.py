"""`nnlab predict`: class probabilities for image files, with the training preprocessing.

The model folder's train_info.json records the input shape (H, W, C) and the class names the
model was trained on. An image is read with Pillow, converted to grey (C = 1) or RGB (C = 3)
and resized to W x H exactly as `image_folder` does in `prepare`; the model then scales the
uint8 pixels to [0, 1] itself, as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from nnlab.datasets.image_folder import read_image
from nnlab.files import read_json
from nnlab.models import get_model_class
from nnlab.pipeline import TRAIN_INFO_FILE


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


def load_images(paths: list[Path], input_shape: tuple[int, int, int]) -> np.ndarray:
    """(N, H, W, C) uint8, or a one-line error naming the first bad file."""
    height, width, channels = input_shape
    if channels not in (1, 3) or height != width:
        raise ValueError(
            f"the model takes {height}x{width}x{channels} inputs, not images; "
            "predict works for models trained on image datasets"
        )
    batch = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    for index, path in enumerate(paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        try:
            pixels = read_image(path, "L" if channels == 1 else "RGB", height)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"{path}: not a readable image ({error})") from None
        batch[index] = pixels.reshape(height, width, channels)
    return batch


def predict(model_dir: Path, paths: list[Path], top: int = 3) -> list[Prediction]:
    """The `top` most likely classes of each image, for the model saved in `model_dir`."""
    model_name = model_dir.name
    info_path = model_dir / TRAIN_INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(
            f"{model_dir}: no trained {model_name} model; run `dvc repro` first"
        )
    info = read_json(info_path)
    if "input_shape" not in info or "classes" not in info:
        raise ValueError(f"{model_dir}: saved by an older nnlab; run `dvc repro` to retrain it")
    classes: list[str] = info["classes"]
    images = load_images(paths, tuple(info["input_shape"]))
    model = get_model_class(info.get("model", model_name)).load(model_dir)
    probabilities = model.predict_proba(images)
    predictions = []
    for path, row in zip(paths, probabilities, strict=True):
        order = np.argsort(-row, kind="stable")[:top]
        predictions.append(
            Prediction(str(path), [(classes[index], float(row[index])) for index in order])
        )
    return predictions
