"""The `data` section of params.yaml: types and bounds (values: params.yaml), and the dataset
names it accepts, each mapped to its source module (imported only by the stage that reads it).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from nnlab.core.schema import Section, one_of

# params.yaml's `data.dataset` values -> "module" or "module:object" of their source
# (nnlab.data.steps.Source). Nothing here imports them.
DATASETS: dict[str, str] = {
    "digits": "nnlab.data.digits",
    "mnist": "nnlab.data.idx:MNIST",
    "fashion_mnist": "nnlab.data.idx:FASHION_MNIST",
    "cifar10": "nnlab.data.cifar10",
    "image_folder": "nnlab.data.image_folder",
    "planar": "nnlab.data.planar",
}
PLANAR_SHAPES = ("flower", "moons")  # nnlab/data/planar.py's CLASSES


class DataParams(Section):
    dataset: Annotated[str, one_of(tuple(DATASETS), "dataset")]
    source: str | None
    test_fraction: float = Field(gt=0, le=0.5)
    val_fraction: float = Field(gt=0, le=0.5)
    image_size: int = Field(ge=4, le=1024)  # prepare also checks the memory it needs
    grayscale: bool
    planar_shape: Annotated[str, one_of(PLANAR_SHAPES, "planar_shape")]
    planar_samples: int = Field(ge=20, le=1_000_000)
