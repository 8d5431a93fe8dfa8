"""Stage `report`: reports/summary.md and summary.csv, one row per model."""

from __future__ import annotations

from nnlab.params import MODEL_NAMES, Params
from nnlab.pipeline import report_step
from nnlab.pipeline.layout import Layout
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        report_step.report(list(MODEL_NAMES), Layout())
        print("report: wrote reports/summary.md, summary.csv and summary.png")

    run("report", body, Layout().outputs("report"))


if __name__ == "__main__":
    main()
