"""scikit-learn logistic regression on flattened pixels: the baseline row of every table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from nnlab.models.base import Checkpoint, EpochHook, FeatureClassifier, History, Split, to_features
from nnlab.models.divergence import cross_entropy
from nnlab.models.logreg.section import LogregParams


class LogregClassifier(FeatureClassifier):
    name = "logreg"
    params: LogregParams

    def runtime(self) -> dict[str, str]:
        return {"backend": "scikit-learn", "device": "cpu"}

    def fit(self, train: Split, val: Split, n_classes: int, on_epoch: EpochHook | None = None,
            checkpoint: Checkpoint | None = None) -> History:  # no epochs: no checkpoint
        x_train, x_val = to_features(train[0]), to_features(val[0])
        model = LogisticRegression(
            C=self.params.C, max_iter=self.params.max_iter, random_state=self.seed
        )
        self.model = model.fit(x_train, train[1])
        # One solver run, so the "history" is a single row, in the same columns as the others.
        train_probs, val_probs = model.predict_proba(x_train), model.predict_proba(x_val)
        return [
            {
                "epoch": 1,
                "loss": cross_entropy(train_probs, train[1]),
                "accuracy": float(accuracy_score(train[1], train_probs.argmax(axis=1))),
                "val_loss": cross_entropy(val_probs, val[1]),
                "val_accuracy": float(accuracy_score(val[1], val_probs.argmax(axis=1))),
            }
        ]

    def count_params(self) -> int:
        model = self._trained()
        return int(model.coef_.size + model.intercept_.size)

    def save(self, directory: Path) -> None:
        model = self._trained()
        arrays = {
            "coef": model.coef_,
            "intercept": model.intercept_,
            "classes": model.classes_,
            "params": np.array(json.dumps(self.params.model_dump())),
        }
        self._save_arrays(directory, arrays)

    @classmethod
    def load(cls, directory: Path) -> LogregClassifier:
        with cls._loading(directory) as archive:
            # a model saved before sections had a `seed` of their own loads as one with null
            params = LogregParams(**{"seed": None, **json.loads(str(archive["params"]))})
            model = LogisticRegression(C=params.C, max_iter=params.max_iter)
            model.coef_ = archive["coef"]
            model.intercept_ = archive["intercept"]
            model.classes_ = archive["classes"]
        classifier = cls(params, seed=0)
        classifier.model = model
        return classifier
