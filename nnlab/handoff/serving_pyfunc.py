"""The model `nnlab serve` serves: a pyfunc over a registered or logged model that takes image
files (PNG or JPEG bytes, base64 in JSON) or uint8 arrays, preprocesses them as `nnlab
predict` does (grey or RGB, resized to the model's input), and returns, per image, the most
likely class and every class's probability.

MLflow loads this file as the model's code (`model_config["uri"]` names the model it wraps).
Bad input raises MlflowException with INVALID_PARAMETER_VALUE, which the scoring server
answers with 400; nnlab/handoff/serve.py makes that one line.

Annotations are real, not strings: MLflow reads ImageClassifierServer.predict's.
"""

import base64
import binascii
import io
from typing import Any, cast

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from PIL import UnidentifiedImageError

IMAGE_KEYS = ("image", "images")  # {"inputs": {"image": [...]}} or a dataframe column


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def to_batch(data: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """A request's images as uint8 (N, H, W, C): base64 image files, or arrays of that shape
    (one image (H, W, C), or H x W for a grey model) with values 0..255."""
    if isinstance(data, dict):
        found = [data[key] for key in IMAGE_KEYS if key in data]
        if len(found) != 1:
            raise bad_request(f"send the images as {{\"inputs\": [...]}} or "
                              f"{{\"inputs\": {{\"image\": [...]}}}}; got keys {sorted(data)}")
        data = found[0]
    if hasattr(data, "columns"):  # a pandas DataFrame (dataframe_split, dataframe_records)
        columns = [key for key in IMAGE_KEYS if key in data.columns]
        if not columns:
            raise bad_request(f"a dataframe needs an 'image' column; got {list(data.columns)}")
        data = data[columns[0]].to_numpy()
    array = np.asarray(data)
    if array.dtype.kind in "USO":
        return np.stack([_decode(item, shape, index) for index, item in
                         enumerate(array.reshape(-1))]) if array.size else \
            np.empty((0, *shape), np.uint8)
    return _pixels(array, shape)


def _decode(item: Any, shape: tuple[int, int, int], index: int) -> np.ndarray:
    from nnlab.data.image_folder import read_image

    height, _, channels = shape
    try:
        raw = base64.b64decode(str(item), validate=True)
        image = read_image(cast(Any, io.BytesIO(raw)), "L" if channels == 1 else "RGB", height)
    except (binascii.Error, ValueError):
        raise bad_request(f"image {index}: not base64 (send each file's bytes base64-encoded)"
                          ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise bad_request(f"image {index}: not a readable PNG or JPEG file "
                          f"({' '.join(str(error).split())[:120]})") from None
    return image.reshape(shape)


def _pixels(array: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    if array.dtype.kind not in "iuf":
        raise bad_request(f"expected base64 image files or uint8 pixels, got {array.dtype}")
    if shape[2] == 1 and array.ndim in (2, 3) and tuple(array.shape[-2:]) == shape[:2]:
        array = array[..., None]  # grey images without their channel axis
    if array.ndim == 3:
        array = array[None]  # one image
    if array.ndim != 4 or tuple(array.shape[1:]) != shape:
        raise bad_request(f"expected images of shape {shape} (H, W, C), got an array of "
                          f"shape {tuple(array.shape)}")
    if array.size and (array.min() < 0 or array.max() > 255 or
                       not np.array_equal(array, np.round(array))):
        raise bad_request("pixels must be whole numbers from 0 to 255 (uint8)")
    return array.astype(np.uint8)


class ImageClassifierServer(PythonModel):
    """Image files or pixels in; per image its class and every class's probability out."""

    def load_context(self, context: Any) -> None:
        uri = context.model_config["uri"]
        metadata = mlflow.models.get_model_info(uri).metadata or {}
        self.classes = list(metadata["classes"])
        self.shape = cast(tuple[int, int, int], tuple(int(x) for x in metadata["input_shape"]))
        self.model = mlflow.pyfunc.load_model(uri)

    def predict(self, context: Any, model_input: Any,
                params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        images = to_batch(model_input, self.shape)
        probabilities = np.asarray(self.model.predict(images)) if len(images) else \
            np.empty((0, len(self.classes)))
        return [{"class": self.classes[int(np.argmax(row))],
                 "probabilities": {name: float(p) for name, p in zip(self.classes, row,
                                                                     strict=True)}}
                for row in probabilities]


mlflow.models.set_model(ImageClassifierServer())
