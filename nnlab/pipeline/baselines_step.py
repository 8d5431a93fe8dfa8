"""The baselines stage: scikit-learn's classical models (nnlab/baselines.py) on the same
train, validation and test split as our models, into reports/baselines.json."""

from __future__ import annotations

from typing import Any

from nnlab.baselines import fit_and_score, subsample
from nnlab.data import load_split
from nnlab.files import write_json
from nnlab.params import Params
from nnlab.pipeline.layout import BASELINES_FILE, Layout


def baselines(params: Params, layout: Layout) -> list[dict[str, Any]]:
    """Fit each of `baselines.models` on the train split (at most
    `baselines.max_train_samples` of it) and score it on validation and test."""
    train = subsample(load_split(layout.split, "train"), params.baselines.max_train_samples,
                      params.seed)
    sets = {"val": load_split(layout.split, "val"), "test": load_split(layout.prepared, "test")}
    rows = [fit_and_score(name, train, sets, params.seed) for name in params.baselines.models]
    write_json(layout.reports / BASELINES_FILE, {"dataset": params.data.dataset, "rows": rows})
    return rows
