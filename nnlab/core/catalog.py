"""What params.yaml may hold: its model keys, each mapped to its family's folder, its
classifier and its params schema, and every section's schema, as strings that nothing imports
until asked.

Reading this file loads no model code: the params loader (nnlab/params.py) takes the names
from here, a stage imports only the model it runs (`load`, through nnlab.models.base) and the
schemas of the sections it validates; dvc.yaml's code deps follow the same strings
(nnlab/training/stage_code.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelEntry:
    classifier: str  # "module:Class" of its ImageClassifier
    params: str  # "module:Class" of its params section's schema

    @property
    def code(self) -> str:
        """The family's folder: dvc.yaml's `${item.code}`, the model stages' own code dep."""
        return self.classifier.rsplit(".", 1)[0].replace(".", "/")


MODELS: dict[str, ModelEntry] = {
    "numpy_dnn": ModelEntry("nnlab.models.numpy.classifier:NumpyDnnClassifier",
                            "nnlab.models.numpy.section:NumpyDnnParams"),
    "numpy_cnn": ModelEntry("nnlab.models.numpy.classifier:NumpyCnnClassifier",
                            "nnlab.models.numpy.section:NumpyCnnParams"),
    "keras_mlp": ModelEntry("nnlab.models.keras.classifier:KerasMlpClassifier",
                            "nnlab.models.keras.section:KerasMlpParams"),
    "cnn": ModelEntry("nnlab.models.keras.classifier:CnnClassifier",
                      "nnlab.models.keras.section:CnnParams"),
    "logreg": ModelEntry("nnlab.models.logreg.classifier:LogregClassifier",
                         "nnlab.models.logreg.section:LogregParams"),
}
MODEL_NAMES = tuple(MODELS)
# Section name -> "module:Class" of its schema, imported only when that section is validated.
SECTIONS: dict[str, str] = {
    "data": "nnlab.data.section:DataParams",
    **{name: entry.params for name, entry in MODELS.items()},
    "baselines": "nnlab.evaluation.baselines:BaselinesParams",
}


def load(target: str) -> Any:
    """The object a "module:Name" string names, its module imported now (the catalog's
    classes and nnlab.params' section schemas)."""
    module_name, name = target.split(":")
    return getattr(importlib.import_module(module_name), name)
