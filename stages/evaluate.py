"""Stage `evaluate@<model>`: validation and test metrics, confusion data, MLflow results."""

from __future__ import annotations

from nnlab.evaluation import evaluate as evaluate_step
from stages._common import run_model_stage


def main(argv: list[str] | None = None) -> None:
    run_model_stage("evaluate", argv, evaluate_step.evaluate, lambda metrics: (
        f"val accuracy {metrics['val']['accuracy']:.4f}, "
        f"test accuracy {metrics['test']['accuracy']:.4f}" if "test" in metrics else
        "pruned by the sweep: no model to score; metrics.json holds its last epoch"),
        own_section=False)


if __name__ == "__main__":
    main()
