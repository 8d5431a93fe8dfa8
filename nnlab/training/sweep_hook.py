"""A sweep's trial, as the train stage sees it: handed in from outside, never imported.

A sweep worker runs a trial's stages with NNLAB_TRIAL set to a JSON object that names its
own hook class (`"hook": "nnlab.search.trial_link:TrialLink"`) and the fields to build it from.
The train stage loads that class by name only when the variable is set, so the train stage's
code (and dvc.yaml's deps) holds nothing of the sweep: an edit to `nnlab/search/` retrains
nothing. Outside a sweep the variable is unset and nothing here runs.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Protocol

from nnlab.models.base import EpochHook

ENV = "NNLAB_TRIAL"
HOOK_KEY = "hook"  # "module:Class", a class of nnlab's that takes the other keys
UNSET = "it is set by `nnlab sweep` workers only: unset it to run the pipeline"


class Trial(Protocol):
    """What training asks of a trial: tags for its MLflow run, a place to record the run, and
    a hook called after each epoch (it may raise Pruned)."""

    def mlflow_tags(self) -> dict[str, str]: ...

    def record_run(self, run_id: str) -> None: ...

    def epoch_reporter(self) -> EpochHook: ...


def from_env() -> Trial | None:
    """The trial this process belongs to, or None outside a sweep.

    Raises:
        ValueError: NNLAB_TRIAL is set but is not what a sweep worker writes.
    """
    text = os.environ.get(ENV)
    if not text:
        return None
    try:
        fields = json.loads(text)
        module_name, _, class_name = str(fields.pop(HOOK_KEY)).partition(":")
        if not module_name.startswith("nnlab.") or not class_name:
            raise ValueError(f"{HOOK_KEY}={module_name}:{class_name} is not a class of nnlab's")
        hook: type[Trial] = getattr(importlib.import_module(module_name), class_name)
        return hook(**fields)
    except (TypeError, ValueError, KeyError, AttributeError, ImportError) as error:
        raise ValueError(f"{ENV} is set but unreadable ({type(error).__name__}: {error}); "
                         f"{UNSET}") from None
