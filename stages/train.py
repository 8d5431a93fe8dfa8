"""Stage `train@<model>`: train one model, log it to MLflow, save models/<model>/."""

from __future__ import annotations

from nnlab import training as train_step
from stages._common import run_model_stage


def main(argv: list[str] | None = None) -> None:
    run_model_stage("train", argv, train_step.train, lambda info: (
        f"{info['pruned_reason']}; no model saved" if info.get("pruned") else
        f"{info['epochs']} epoch{'' if info['epochs'] == 1 else 's'} in "
        f"{info['training_seconds']} s, "
        f"MLflow run {info['mlflow_run_id']}"), own_section=True)


if __name__ == "__main__":
    main()
