"""Stage `split`: a stratified, seeded validation set out of the training part."""

from __future__ import annotations

from nnlab.core.layout import Layout
from nnlab.core.schema import Params
from nnlab.data import split as data_split
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        counts = data_split.split(params.data, params.seed, Layout())
        print(f"split: {counts['train']} train, {counts['val']} validation images")

    run("split", body, Layout().outputs("split"), sections=("data",))


if __name__ == "__main__":
    main()
