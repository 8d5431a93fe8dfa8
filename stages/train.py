"""Stage `train@<model>`: train one model, log it to MLflow, save models/<model>/."""

from __future__ import annotations

from nnlab.core.layout import Layout
from nnlab.core.schema import Params
from nnlab.training import sweep_hook
from nnlab.training import train as train_step
from stages._common import run_model_stage


def train(model: str, params: Params, layout: Layout) -> dict[str, object]:
    # In a sweep, the trial comes from outside (NNLAB_TRIAL): training never imports the sweep.
    return train_step.train(model, params, layout, sweep_hook.from_env())


def main(argv: list[str] | None = None) -> None:
    run_model_stage("train", argv, train, lambda info: (
        f"{info['pruned_reason']}; no model saved" if info.get("pruned") else
        f"{info['epochs']} epoch{'' if info['epochs'] == 1 else 's'} in "
        f"{info['training_seconds']} s, "
        f"MLflow run {info['mlflow_run_id']}"), own_section=True)


if __name__ == "__main__":
    main()
