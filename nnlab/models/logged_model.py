"""A trained model in MLflow: how it is logged to its run.

The Keras models are logged with the Keras flavor (with a softmax head). numpy_dnn, numpy_cnn
and logreg are logged as code: nnlab/models/portable.py, with their `model.npz` as the
artifact "weights"; nothing is pickled. portable.py imports only NumPy (and MLflow, when
MLflow runs it), so the logged model loads wherever MLflow and its requirements.txt are
installed, with no nnlab; and it is the same file that `nnlab predict` and evaluate run
(nnlab.models.base.load_predictor), not a copy.

Models logged before portable.py (their code is logged_model.py, their folder the artifact
"model") load through nnlab: `weights_folder` finds either.
"""

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from nnlab.models import portable

MODEL_NAME = "model"  # the MLflow model's name inside its run
PORTABLE_CODE = Path(portable.__file__)


def weights_folder(local_model: Path) -> Path:
    """The folder holding model.npz inside a downloaded pyfunc model of nnlab: its artifact
    "weights" (a file), or "model" (a folder) for models logged before portable.py."""
    from mlflow.models import Model

    flavor = Model.load(str(local_model)).flavors.get("python_function", {})
    artifacts = flavor.get("artifacts", {})
    if "weights" in artifacts:
        return (local_model / artifacts["weights"]["path"]).parent
    if "model" in artifacts:
        return local_model / artifacts["model"]["path"]
    raise ValueError(f"{local_model}: not a model logged by nnlab (no weights artifact)")


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
    probabilities); the others are portable.py over `model_dir`'s model.npz, logged as code.
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
            # MLflow checks the input example with `model.predict()` at Keras's default
            # verbosity. Keras keeps "no progress bar" per thread (nnlab/models/keras/
            # backend.py), and on JAX the bar is drawn by its callback threads, which never
            # heard of it: that call's stdout (a raw bar with ANSI escapes) is dropped.
            warnings.filterwarnings("ignore", "Model doesn't support `jit_compile=True`")
            with _keras_example_folder(), contextlib.redirect_stdout(io.StringIO()):
                info = mlflow.keras.log_model(
                    classifier.probability_model(), **common,
                    pip_requirements=pins("keras", *BACKEND_PACKAGES[
                        classifier.runtime()["backend"]], "numpy"),
                )
        else:
            info = mlflow.pyfunc.log_model(
                python_model=str(PORTABLE_CODE),  # MLflow runs this file to load the model
                artifacts={"weights": str(model_dir / portable.WEIGHTS_FILE)},
                **common, pip_requirements=pins("numpy"),
            )
    return str(info.model_uri)

