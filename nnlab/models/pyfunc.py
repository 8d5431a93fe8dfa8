"""The MLflow pyfunc model for numpy_dnn and logreg, logged as code (nothing is pickled).

`tracking.log_model` logs this file with the saved model folder as the artifact "model" and
the model's params name as `model_config["model"]`. MLflow runs the file when the model is
loaded; `predict` then uses the project's own loader and `predict_proba`, so the MLflow model
and `nnlab predict` can never disagree. Loading it needs `nnlab` installed.
"""

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from nnlab.models.base import ImageClassifier, get_model_class


class SavedModel(PythonModel):
    """uint8 images (N, H, W, C) in, class probabilities (N, n_classes) out."""

    def load_context(self, context: Any) -> None:
        model_class = get_model_class(context.model_config["model"])
        self.classifier: ImageClassifier = model_class.load(Path(context.artifacts["model"]))

    # Real (not string) annotations: MLflow reads them. np.ndarray tells it to leave the
    # input to the logged signature instead of inferring a schema from the hints.
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return self.classifier.predict_proba(np.asarray(model_input, dtype=np.uint8))


mlflow.models.set_model(SavedModel())
