"""The `data` section of params.yaml: types and bounds (values: params.yaml), and the dataset
names it accepts (nnlab/data/ingest.py maps each to its source)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from nnlab.core.schema import Section, one_of

# params.yaml's `data.dataset` values; digits is bundled with scikit-learn and works offline.
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "image_folder", "planar")
PLANAR_SHAPES = ("flower", "moons")  # nnlab/data/planar.py's CLASSES


class DataParams(Section):
    dataset: Annotated[str, one_of(DATASETS, "dataset")]
    source: str | None
    test_fraction: float = Field(gt=0, le=0.5)
    val_fraction: float = Field(gt=0, le=0.5)
    image_size: int = Field(ge=4, le=1024)  # prepare also checks the memory it needs
    grayscale: bool
    planar_shape: Annotated[str, one_of(PLANAR_SHAPES, "planar_shape")]
    planar_samples: int = Field(ge=20, le=1_000_000)
