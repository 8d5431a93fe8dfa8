"""Stage `report`: reports/summary.md and summary.csv, one row per model."""

from __future__ import annotations

from nnlab import pipeline
from nnlab.params import MODEL_NAMES, Params
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        pipeline.report(list(MODEL_NAMES), pipeline.Layout())
        print("report: wrote reports/summary.md, summary.csv and summary.png")

    run("report", body, pipeline.Layout().outputs("report"))


if __name__ == "__main__":
    main()
