"""How a trained model is logged to its MLflow run: the Keras flavor for the Keras models,
the pyfunc in pyfunc.py over the saved folder for the others, each with a signature and
pinned requirements."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

MODEL_NAME = "model"  # the MLflow model's name inside its run
PYFUNC_CODE = Path(__file__).with_name("pyfunc.py")


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


def log_model(classifier: Any, model_name: str, model_dir: Path, sample: Any) -> str:
    """Log a trained model to the active run with a signature inferred from `sample` images;
    returns its `models:/` URI.

    Keras models use the Keras flavor (with a softmax head, so both flavors output
    probabilities); the others are the pyfunc in `pyfunc.py` over `model_dir`.
    Requirements are pinned from the installed versions: MLflow would otherwise infer them by
    loading the model in a subprocess, which costs a TensorFlow import per stage.
    """
    from mlflow.models import infer_signature

    signature = infer_signature(sample, classifier.predict_proba(sample))
    with warnings.catch_warnings():
        # The signature above is what an input example would give.
        warnings.filterwarnings("ignore", ".*An input example was not provided")
        return _log_model(classifier, model_name, model_dir, signature)


def _log_model(classifier: Any, model_name: str, model_dir: Path, signature: Any) -> str:
    import mlflow

    if classifier.flavor == "keras":
        info = mlflow.keras.log_model(
            classifier.probability_model(), name=MODEL_NAME, signature=signature,
            pip_requirements=pins("keras", "tensorflow", "numpy"),
        )
    else:
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(PYFUNC_CODE),
            artifacts={"model": str(model_dir)},
            model_config={"model": model_name},
            signature=signature,
            pip_requirements=pins("numpy", "scikit-learn"),
        )
    return str(info.model_uri)
