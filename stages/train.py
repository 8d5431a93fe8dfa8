"""Stage `train@<model>`: train one model, log it to MLflow, save models/<model>/."""

from __future__ import annotations

from nnlab.params import Params
from nnlab.pipeline import train_step
from nnlab.pipeline.layout import Layout
from stages._common import parse_model, run


def main(argv: list[str] | None = None) -> None:
    model = parse_model(argv, "train")

    def body(params: Params) -> None:
        info = train_step.train(model, params, Layout())
        print(
            f"train@{model}: {info['epochs']} epochs in {info['training_seconds']} s, "
            f"MLflow run {info['mlflow_run_id']}"
        )

    run(f"train@{model}", body, Layout().outputs("train", model), mlflow_run=True)


if __name__ == "__main__":
    main()
