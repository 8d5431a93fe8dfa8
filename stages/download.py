"""Stage `download`: fetch and verify the raw files of `data.dataset` into data/raw."""

from __future__ import annotations

from nnlab.params import Params
from nnlab.pipeline import data_steps
from nnlab.pipeline.layout import Layout
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        data_steps.download(params, Layout())
        print(f"download: {params.data.dataset} ready in data/raw")

    run("download", body)


if __name__ == "__main__":
    main()
