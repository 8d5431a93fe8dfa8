"""Dataset sources. Each module turns one source into the data contract (see nnlab.data).

A source module exposes:
- ``HAS_TEST_SET``: whether the source ships an official test split;
- ``download(raw_dir, data)``: put the raw files under ``raw_dir`` (or nothing, if bundled);
- ``load(raw_dir, data)``: return a :class:`nnlab.data.RawDataset` built from those files.
"""

from __future__ import annotations

from types import ModuleType

from nnlab.datasets import digits

# params.yaml's `data.dataset` values, mapped to their source module.
DATASETS: dict[str, ModuleType] = {
    "digits": digits,
}


def get_dataset(name: str) -> ModuleType:
    """The source module for `data.dataset`, or a ValueError listing the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"data.dataset={name!r}: unknown dataset; choose one of: {', '.join(DATASETS)}"
        ) from None
