"""Stage `download`: fetch and verify the raw files of `data.dataset` into data/raw."""

from __future__ import annotations

from nnlab import pipeline
from nnlab.params import Params
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        pipeline.download(params, pipeline.Layout())
        print(f"download: {params.data.dataset} ready in data/raw")

    run("download", body)


if __name__ == "__main__":
    main()
