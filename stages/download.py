"""Stage `download`: fetch and verify the raw files of `data.dataset` into data/raw."""

from __future__ import annotations

from nnlab.core.layout import Layout
from nnlab.core.schema import Params
from nnlab.data import ingest
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        ingest.download(params.data, Layout())
        print(f"download: {params.data.dataset} ready in data/raw")

    run("download", body, sections=("data",))


if __name__ == "__main__":
    main()
