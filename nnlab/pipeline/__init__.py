"""What each dvc.yaml stage does, as typed functions the stage modules call, one module per
stage so that each stage's dvc.yaml deps list only the code it runs:

    layout.py         where the outputs live (Layout) and the file names stages share
    data_steps.py     download, prepare, split
    train_step.py     train
    evaluate_step.py  evaluate
    report_step.py    report

Paths come in as arguments (Layout), so every step can be unit-tested on a temporary folder.
The stages import the module they need; `nnlab.pipeline.train(...)` and the like also work,
loading that module on first use (for tests, benchmarks and notebooks).
"""

from __future__ import annotations

import importlib
from typing import Any

from nnlab.pipeline.layout import (
    HISTORY_COLUMNS,
    PLOTS_DIR,
    SKIPPED_FILE,
    TRAIN_INFO_FILE,
    Layout,
)

# name -> the module that defines it, loaded on first use
_LAZY = {
    "download": "data_steps", "prepare": "data_steps", "split": "data_steps",
    "check_training_counts": "data_steps", "MIN_TRAIN_PER_CLASS": "data_steps",
    "TEST_HOLDOUT_SEED": "data_steps",
    "train": "train_step",
    "evaluate": "evaluate_step", "read_history": "evaluate_step",
    "report": "report_step", "SUMMARY_COLUMNS": "report_step",
}

__all__ = ["HISTORY_COLUMNS", "PLOTS_DIR", "SKIPPED_FILE", "TRAIN_INFO_FILE", "Layout",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nnlab.pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nnlab.pipeline.{_LAZY[name]}"), name)
