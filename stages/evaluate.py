"""Stage `evaluate@<model>`: validation and test metrics, confusion data, MLflow results."""

from __future__ import annotations

from nnlab import pipeline
from nnlab.params import Params
from stages._common import parse_model, run


def main(argv: list[str] | None = None) -> None:
    model = parse_model(argv, "evaluate")

    def body(params: Params) -> None:
        metrics = pipeline.evaluate(model, params, pipeline.Layout())
        print(
            f"evaluate@{model}: val accuracy {metrics['val']['accuracy']:.4f}, "
            f"test accuracy {metrics['test']['accuracy']:.4f}"
        )

    run(f"evaluate@{model}", body, pipeline.Layout().outputs("evaluate", model), mlflow_run=True)


if __name__ == "__main__":
    main()
