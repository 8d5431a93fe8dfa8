"""The model `nnlab serve` serves: a pyfunc over a registered or logged model that takes image
files (PNG or JPEG bytes, base64 in JSON) or uint8 arrays, preprocesses them as `nnlab
predict` does (grey or RGB, resized to the model's input), and returns, per image, the most
likely class and every class's probability.

MLflow loads this file as the model's code (`model_config["uri"]` names the model it wraps,
`max_images` and `max_pixels` the limits of a request). The model runs at its own speed
(`registered_predictor`: a Keras model's compiled function, an ONNX model in onnxruntime),
warmed up at load, and concurrent requests share its calls (nnlab/handoff/batching.py).

Bad input raises MlflowException with INVALID_PARAMETER_VALUE, which the scoring server
answers with 400; nnlab/handoff/scoring_server.py makes that one line. An image file's size is read
from its header and checked before it is decoded, and at most one image per core is being
decoded at any time: a request's memory is bounded by its body, whatever the files claim.

Annotations are real, not strings: MLflow reads ImageClassifierServer.predict's.
"""

import base64
import binascii
import io
import logging
import os
import threading
from typing import Any, cast

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from PIL import Image, UnidentifiedImageError

from nnlab.handoff.limits import MAX_IMAGES, MAX_PIXELS, REQUEST_PIXELS

IMAGE_KEYS = ("image", "images")  # {"inputs": {"image": [...]}} or a dataframe column
# At most this many files decoded at once: each may take max_pixels x 4 bytes while decoding.
DECODING = threading.BoundedSemaphore(os.cpu_count() or 1)


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def to_batch(data: Any, shape: tuple[int, int, int], max_images: int = MAX_IMAGES,
             max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A request's images as uint8 (N, H, W, C): base64 image files, or arrays of that shape
    (one image (H, W, C), or H x W for a grey model) with values 0..255. More than
    `max_images` images, or a file of more than `max_pixels` pixels, is refused."""
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
        items = array.reshape(-1)
        _check_count(len(items), max_images)
        # Every file's size from its header first: what the request decodes to is known,
        # and bounded, before any file is decoded.
        files = [_opened(item, index, max_pixels) for index, item in enumerate(items)]
        total, budget = sum(pixels for _, pixels in files), REQUEST_PIXELS * max_pixels
        if total > budget:
            raise bad_request(f"the request's {len(files)} image files hold {total:,} pixels, "
                              f"over the limit of {budget:,} pixels per request ({REQUEST_PIXELS}"
                              " x nnlab serve --max-pixels): send them in several requests")
        return np.stack([_decode(raw, shape, index) for index, (raw, _) in enumerate(files)]
                        ) if files else np.empty((0, *shape), np.uint8)
    images = _pixels(array, shape)
    _check_count(len(images), max_images)
    return images


def _check_count(count: int, max_images: int) -> None:
    if count > max_images:
        raise bad_request(f"{count:,} images in one request, over the limit of {max_images:,} "
                          "(nnlab serve --max-images): send them in several requests")


def _opened(item: Any, index: int, max_pixels: int) -> tuple[io.BytesIO, int]:
    """An image file's bytes and its width x height, read from its header (nothing decoded);
    over `max_pixels`, not base64 or not an image: one line naming the image."""
    if not isinstance(item, str | bytes):
        raise bad_request(f"image {index}: expected a base64-encoded image file, got "
                          f"{'null' if item is None else type(item).__name__}")
    try:
        raw = io.BytesIO(base64.b64decode(item, validate=True))
        with Image.open(raw) as header:  # reads the header only
            width, tall = header.size
    except (binascii.Error, ValueError):
        raise bad_request(f"image {index}: not base64 (send each file's bytes base64-encoded)"
                          ) from None
    except UnidentifiedImageError:  # its message holds only a memory address
        raise bad_request(f"image {index}: not a readable PNG or JPEG file (not an image "
                          "format Pillow reads: SVG and PDF are not images)") from None
    except (OSError, SyntaxError) as error:
        raise bad_request(f"image {index}: not a readable PNG or JPEG file "
                          f"({' '.join(str(error).split())[:120]})") from None
    if width * tall > max_pixels:
        raise bad_request(f"image {index}: {width}x{tall} pixels, over the limit of "
                          f"{max_pixels:,} pixels per image (nnlab serve --max-pixels)")
    raw.seek(0)
    return raw, width * tall


def _decode(raw: io.BytesIO, shape: tuple[int, int, int], index: int) -> np.ndarray:
    from nnlab.data.image_folder import decode_image

    height, _, channels = shape
    try:
        with DECODING:
            image = decode_image(raw, "L" if channels == 1 else "RGB", height)
    except Image.DecompressionBombError as error:  # Pillow's own limit, above ours
        raise bad_request(f"image {index}: over the pixel limit "
                          f"({' '.join(str(error).split())[:120]})") from None
    except (OSError, SyntaxError, ValueError) as error:
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
        from nnlab.handoff.batching import Batcher
        from nnlab.handoff.prediction import registered_predictor

        config = context.model_config
        uri = config["uri"]
        metadata = mlflow.models.get_model_info(uri).metadata or {}
        self.classes = list(metadata["classes"])
        self.shape = cast(tuple[int, int, int], tuple(int(x) for x in metadata["input_shape"]))
        self.max_images = int(config.get("max_images", MAX_IMAGES))
        self.max_pixels = int(config.get("max_pixels", MAX_PIXELS))
        # Every file's size is checked against max_pixels from its header, before it is
        # decoded (_decode): Pillow's own guard, which refuses at open without the size,
        # would only hide which limit a request broke.
        Image.MAX_IMAGE_PIXELS = None
        self.model = Batcher(registered_predictor(uri), max_rows=max(self.max_images, 256))
        # Compiled now, not on the first requests: one trace per size on purpose, which
        # TensorFlow's retracing warning would call a mistake.
        tensorflow_log = logging.getLogger("tensorflow")
        level = tensorflow_log.level
        tensorflow_log.setLevel(logging.ERROR)
        try:
            for size in (1, 2, 4, 8, 16, 32):
                self.model(np.zeros((size, *self.shape), np.uint8))
        finally:
            tensorflow_log.setLevel(level)

    # np.ndarray is one of the hints MLflow infers no schema from: no conversion, and none
    # of its start-up warnings about `Any`. The input is any of to_batch's forms.
    def predict(self, context: Any, model_input: np.ndarray,
                params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        images = to_batch(model_input, self.shape, self.max_images, self.max_pixels)
        probabilities = self.model(images) if len(images) else \
            np.empty((0, len(self.classes)))
        return [{"class": self.classes[int(np.argmax(row))],
                 "probabilities": {name: float(p) for name, p in zip(self.classes, row,
                                                                     strict=True)}}
                for row in probabilities]


mlflow.models.set_model(ImageClassifierServer())
