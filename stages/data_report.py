"""Stage `data_report`: the data before training: sample images per class and the class
counts of every set (reports/data/)."""

from __future__ import annotations

from nnlab.core.layout import Layout
from nnlab.core.schema import Params
from nnlab.evaluation.data_plots import data_report
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        counts = data_report(params.data.dataset, params.seed, Layout())
        print(f"data_report: reports/data/ from {counts['train']} training, {counts['val']} "
              f"validation and {counts['test']} test images")

    run("data_report", body, Layout().outputs("data_report"), sections=("data",))


if __name__ == "__main__":
    main()
