"""Stage `prepare`: raw files -> uint8 arrays + classes.json, with a fixed test hold-out."""

from __future__ import annotations

from nnlab import pipeline
from nnlab.params import Params
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        counts = pipeline.prepare(params, pipeline.Layout())
        print(f"prepare: {counts['train']} train+val and {counts['test']} test images")
        if counts["skipped"]:
            print(
                f"prepare: skipped {counts['skipped']} unreadable file(s); "
                f"see data/prepared/{pipeline.SKIPPED_FILE}"
            )

    run("prepare", body, pipeline.Layout().outputs("prepare"))


if __name__ == "__main__":
    main()
