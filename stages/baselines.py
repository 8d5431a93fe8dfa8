"""Stage `baselines`: scikit-learn's classical models on the same split, for the report."""

from __future__ import annotations

from nnlab.core.layout import Layout
from nnlab.core.schema import Params
from nnlab.evaluation import baselines
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        for row in baselines.baselines(params.section("baselines"), params.data.dataset,
                                      params.seed, Layout()):
            print(f"baselines: {row['model']}: val accuracy {row['val_accuracy']:.4f}, test "
                  f"accuracy {row['test_accuracy']:.4f} ({row['train_samples']} training "
                  f"images, {row['training_seconds']:.1f} s)")

    run("baselines", body, Layout().outputs("baselines"), sections=("data", "baselines"))


if __name__ == "__main__":
    main()
