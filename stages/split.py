"""Stage `split`: a stratified, seeded validation set out of the training part."""

from __future__ import annotations

from nnlab.params import Params
from nnlab.pipeline import data_steps
from nnlab.pipeline.layout import Layout
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        counts = data_steps.split(params, Layout())
        print(f"split: {counts['train']} train, {counts['val']} validation images")

    run("split", body, Layout().outputs("split"))


if __name__ == "__main__":
    main()
