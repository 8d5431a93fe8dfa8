"""Stage `evaluate@<model>`: validation and test metrics, confusion data, MLflow results."""

from __future__ import annotations

from nnlab.params import Params
from nnlab.pipeline import evaluate_step
from nnlab.pipeline.layout import Layout
from stages._common import parse_model, run


def main(argv: list[str] | None = None) -> None:
    model = parse_model(argv, "evaluate")

    def body(params: Params) -> None:
        metrics = evaluate_step.evaluate(model, params, Layout())
        print(
            f"evaluate@{model}: val accuracy {metrics['val']['accuracy']:.4f}, "
            f"test accuracy {metrics['test']['accuracy']:.4f}"
        )

    run(f"evaluate@{model}", body, Layout().outputs("evaluate", model), mlflow_run=True)


if __name__ == "__main__":
    main()
