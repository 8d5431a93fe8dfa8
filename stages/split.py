"""Stage `split`: a stratified, seeded validation set out of the training part."""

from __future__ import annotations

from nnlab import pipeline
from nnlab.params import Params
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        counts = pipeline.split(params, pipeline.Layout())
        print(f"split: {counts['train']} train, {counts['val']} validation images")

    run("split", body, pipeline.Layout().outputs("split"))


if __name__ == "__main__":
    main()
