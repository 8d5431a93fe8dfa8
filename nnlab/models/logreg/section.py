"""The `logreg` section of params.yaml: types and bounds (values: params.yaml)."""

from __future__ import annotations

from pydantic import Field

from nnlab.core.schema import ModelFields


class LogregParams(ModelFields):
    """scikit-learn LogisticRegression on flattened pixels."""

    C: float = Field(gt=0, le=1e6)
    max_iter: int = Field(gt=0, le=1_000_000)
