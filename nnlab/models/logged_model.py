"""A trained model in MLflow: how it is logged to its run, and the pyfunc that loads it.

The Keras models are logged with the Keras flavor (with a softmax head). numpy_dnn and
logreg are logged as code: this file, with the saved model folder as the artifact "model" and
the model's params name as `model_config["model"]`; nothing is pickled. MLflow runs this file
when the model is loaded (and once when it is logged), and `SavedModel.predict` uses the
project's own loader and `predict_proba`, so the MLflow model and `nnlab predict` can never
disagree. Loading it needs `nnlab` installed.

Annotations are real, not strings (no `from __future__ import annotations`): MLflow reads
SavedModel.predict's.
"""

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from nnlab.models.base import ImageClassifier, get_model_class

MODEL_NAME = "model"  # the MLflow model's name inside its run


class SavedModel(PythonModel):
    """uint8 images (N, H, W, C) in, class probabilities (N, n_classes) out."""

    def load_context(self, context: Any) -> None:
        model_class = get_model_class(context.model_config["model"])
        self.classifier: ImageClassifier = model_class.load(Path(context.artifacts["model"]))

    # np.ndarray tells MLflow to leave the input to the logged signature instead of
    # inferring a schema from the hints.
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return self.classifier.predict_proba(np.asarray(model_input, dtype=np.uint8))


@contextlib.contextmanager
def _keras_example_folder() -> Iterator[None]:
    """MLflow 3.17's Keras flavor writes the input example before it creates the model's
    folder (FileNotFoundError: .../model/input_example.json): inside the block, its
    save_model makes the folder first."""
    import mlflow.keras

    flavor: Any = mlflow.keras
    original = flavor.save_model

    def save_model(*args: Any, **kwargs: Any) -> Any:
        os.makedirs(kwargs["path"] if "path" in kwargs else args[1], exist_ok=True)
        return original(*args, **kwargs)

    flavor.save_model = save_model
    try:
        yield
    finally:
        flavor.save_model = original


def pins(*packages: str) -> list[str]:
    """`package==version` of installed packages; "tensorflow" pins whichever TensorFlow
    distribution is installed (tensorflow-cpu here, plain tensorflow elsewhere)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in packages:
        candidates = ("tensorflow-cpu", "tensorflow") if package == "tensorflow" else (package,)
        for candidate in candidates:
            try:
                pins.append(f"{candidate}=={version(candidate)}")
                break
            except PackageNotFoundError:
                continue
        else:
            raise PackageNotFoundError(package)
    return pins


# What a Keras model logged from each backend needs installed to load as it was trained.
BACKEND_PACKAGES = {"tensorflow": ("tensorflow",), "jax": ("jax", "jaxlib")}
EXAMPLES = 3  # uint8 images kept with the logged model as its input example


def log_model(classifier: Any, model_name: str, model_dir: Path, sample: Any,
              metadata: dict[str, Any]) -> str:
    """Log a trained model to the active run, with a signature inferred from `sample` images,
    its first images as input example, and `metadata` in its MLmodel file (the model's name,
    the class names, the input shape (H, W, C) and the dataset: what a client needs to turn
    an image file into the model's input, with nothing but the model); returns its
    `models:/` URI.

    Keras models use the Keras flavor (with a softmax head, so both flavors output
    probabilities); the others are this file's SavedModel over `model_dir`, logged as code.
    Requirements are pinned from the installed versions: MLflow would otherwise infer them by
    loading the model in a subprocess, which costs a TensorFlow import per stage.
    """
    from mlflow.models import infer_signature

    signature = infer_signature(sample, classifier.predict_proba(sample))
    common = {"name": MODEL_NAME, "signature": signature, "metadata": metadata,
              "input_example": np.asarray(sample[:EXAMPLES], dtype=np.uint8)}
    with warnings.catch_warnings():
        # MLflow's note that an integer column cannot hold missing values: images never do.
        warnings.filterwarnings("ignore", ".*integer column.*")
        if classifier.flavor == "keras":
            with _keras_example_folder():
                info = mlflow.keras.log_model(
                    classifier.probability_model(), **common,
                    pip_requirements=pins("keras", *BACKEND_PACKAGES[
                        classifier.runtime()["backend"]], "numpy"),
                )
        else:
            info = mlflow.pyfunc.log_model(
                python_model=__file__,  # this file: MLflow runs it to load the model
                artifacts={"model": str(model_dir)}, model_config={"model": model_name},
                **common, pip_requirements=pins("numpy", "scikit-learn"),
            )
    return str(info.model_uri)


mlflow.models.set_model(SavedModel())
