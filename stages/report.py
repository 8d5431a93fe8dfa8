"""Stage `report`: reports/summary.md and summary.csv, one row per model."""

from __future__ import annotations

from nnlab.core.layout import Layout
from nnlab.core.schema import Params
from nnlab.evaluation import summary as report_step
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        report_step.report(list(params.models), Layout())
        print("report: wrote reports/summary.md, summary.csv and summary.png")

    run("report", body, Layout().outputs("report"))


if __name__ == "__main__":
    main()
