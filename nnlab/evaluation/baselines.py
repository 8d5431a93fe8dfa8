"""Classical baselines from scikit-learn, trained on the pipeline's own split: what our models
must beat, in reports/baselines.json. An RBF SVC is the strongest classical model on small
image sets; an MLP with one hidden layer of 128 is the plain neural baseline. The
`baselines` section's schema is here too."""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
from pydantic import Field

from nnlab.arrays.chunks import chunk_rows, chunks
from nnlab.arrays.contract import Split, load_split, to_features
from nnlab.core.files import write_json
from nnlab.core.layout import BASELINES_FILE, Layout
from nnlab.core.schema import Section

BASELINES = {
    "svc": "scikit-learn SVC (RBF kernel, C=1, gamma='scale')",
    "mlp": "scikit-learn MLPClassifier(128), Adam, 200 iterations at most",
}
BaselineName = Literal["svc", "mlp"]  # BASELINES' keys


class BaselinesParams(Section):
    """The `baselines` section of params.yaml (values: params.yaml)."""

    models: tuple[BaselineName, ...]
    max_train_samples: int = Field(gt=0, le=1_000_000)  # an SVC's fit is quadratic


def _estimator(name: str, seed: int) -> Any:
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    if name == "svc":
        return SVC()
    return MLPClassifier(hidden_layer_sizes=(128,), random_state=seed)


def subsample(split: Split, limit: int, seed: int) -> Split:
    """At most `limit` samples, stratified enough for a baseline: a seeded random subset."""
    images, labels = split
    if len(labels) <= limit:
        return split
    keep = np.sort(np.random.default_rng(seed).choice(len(labels), limit, replace=False))
    return images[keep], labels[keep]


def fit_and_score(name: str, train: Split, sets: dict[str, Split], seed: int) -> dict[str, Any]:
    """Train baseline `name` on `train`; its accuracy on each of `sets` and its fit time."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    estimator = _estimator(name, seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported as it is: a baseline
        estimator.fit(to_features(train[0]), train[1])
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"model": name, "description": BASELINES[name],
                              "training_seconds": round(seconds, 3),
                              "train_samples": int(len(train[1]))}
    for split, (images, labels) in sets.items():
        # In chunks (float64 features inside scikit-learn: 8 bytes a pixel), whatever the set.
        rows = chunk_rows(8 * int(np.prod(images.shape[1:])))
        predicted = np.concatenate([estimator.predict(to_features(images[part]))
                                    for part in chunks(len(labels), rows)]) \
            if len(labels) else np.empty(0, np.int64)
        result[f"{split}_accuracy"] = float(np.mean(predicted == labels))
    return result


def baselines(section: BaselinesParams, dataset: str, seed: int,
              layout: Layout) -> list[dict[str, Any]]:
    """Fit each of `baselines.models` on the train split (at most
    `baselines.max_train_samples` of it) and score it on validation and test."""
    train = subsample(load_split(layout.split, "train"), section.max_train_samples,
                      seed)
    sets = {"val": load_split(layout.split, "val"), "test": load_split(layout.prepared, "test")}
    rows = [fit_and_score(name, train, sets, seed) for name in section.models]
    write_json(layout.reports / BASELINES_FILE, {"dataset": dataset, "rows": rows})
    return rows
