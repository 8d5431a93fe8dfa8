"""scikit-learn logistic regression on flattened pixels: the baseline row of every table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from nnlab.files import load_npz, reading
from nnlab.models import (
    RESTORE_MODEL,
    History,
    ImageClassifier,
    Split,
    save_arrays,
    to_features,
    trained_file,
)
from nnlab.numpy_dnn.losses import cross_entropy
from nnlab.params import LogregParams

COEF_FILE = "model.npz"


class LogregClassifier(ImageClassifier):
    params: LogregParams

    def __init__(self, params: LogregParams, seed: int) -> None:
        super().__init__(params, seed)
        self.model: LogisticRegression | None = None

    def fit(self, train: Split, val: Split, n_classes: int) -> History:
        x_train, x_val = to_features(train[0]), to_features(val[0])
        self.model = LogisticRegression(
            C=self.params.C, max_iter=self.params.max_iter, random_state=self.seed
        )
        self.model.fit(x_train, train[1])
        # One solver run, so the "history" is a single row, in the same columns as the others.
        train_probs, val_probs = self.model.predict_proba(x_train), self.model.predict_proba(x_val)
        return [
            {
                "epoch": 1,
                "loss": cross_entropy(train_probs, train[1]),
                "accuracy": float(accuracy_score(train[1], train_probs.argmax(axis=1))),
                "val_loss": cross_entropy(val_probs, val[1]),
                "val_accuracy": float(accuracy_score(val[1], val_probs.argmax(axis=1))),
            }
        ]

    def _trained(self) -> LogisticRegression:
        if self.model is None:
            raise RuntimeError("logreg: fit() or load() the model first")
        return self.model

    def predict_proba(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        return self._trained().predict_proba(to_features(images)).astype(np.float32)

    def count_params(self) -> int:
        model = self._trained()
        return int(model.coef_.size + model.intercept_.size)

    def save(self, directory: Path) -> None:
        # Plain arrays instead of a pickle: loading a model never executes code.
        model = self._trained()
        arrays = {
            "coef": model.coef_,
            "intercept": model.intercept_,
            "classes": model.classes_,
            "params": np.array(json.dumps(self.params.model_dump())),
        }
        save_arrays(directory / COEF_FILE, arrays)

    @classmethod
    def load(cls, directory: Path) -> LogregClassifier:
        path = trained_file(directory, COEF_FILE, "logreg")
        archive = load_npz(path, "the logreg model", RESTORE_MODEL)
        with reading(path, "the logreg model", RESTORE_MODEL):
            params = LogregParams(**json.loads(str(archive["params"])))
            model = LogisticRegression(C=params.C, max_iter=params.max_iter)
            model.coef_ = archive["coef"]
            model.intercept_ = archive["intercept"]
            model.classes_ = archive["classes"]
        classifier = cls(params, seed=0)
        classifier.model = model
        return classifier
