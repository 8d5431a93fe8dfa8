"""Dataset sources. Each one turns its raw files into the data contract (see nnlab.data).

A source has two functions (a module or an object):
- ``download(raw_dir, data)``: put verified raw files under ``raw_dir`` (DVC's `data/raw`);
- ``load(raw_dir, data)``: return a :class:`nnlab.data.RawDataset` built from those files.
Sources with an official test split fill ``RawDataset.test_images``; the others get a fixed
stratified hold-out in the `prepare` stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from nnlab.datasets import cifar10, digits, image_folder, planar
from nnlab.datasets.idx import FASHION_MNIST, MNIST

if TYPE_CHECKING:
    from nnlab.data import RawDataset
    from nnlab.params import DataParams


class Source(Protocol):
    def download(self, raw_dir: Path, data: DataParams) -> None: ...

    def load(self, raw_dir: Path, data: DataParams) -> RawDataset: ...


# params.yaml's `data.dataset` values, mapped to their source.
DATASETS: dict[str, Source] = {
    "digits": digits,
    "mnist": MNIST,
    "fashion_mnist": FASHION_MNIST,
    "cifar10": cifar10,
    "image_folder": image_folder,
    "planar": planar,
}


def get_dataset(name: str) -> Source:
    """The source for `data.dataset`, or a ValueError listing the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"data.dataset={name!r}: unknown dataset; choose one of: {', '.join(DATASETS)}"
        ) from None
