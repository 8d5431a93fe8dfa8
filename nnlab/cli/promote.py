"""`nnlab promote`: a trained model becomes a version in MLflow's registry, and @champion
moves to it if it is the best on validation; the work is nnlab/handoff/promotion.py."""

from __future__ import annotations

import argparse

from nnlab.cli.one_line_errors import one_line_errors


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    promote = commands.add_parser(
        "promote", help="register a trained model in MLflow's registry as <dataset>-<model>; "
        "@champion moves to it if its validation accuracy is the best",
        description="Register a trained model as a new version of the registered model "
        "<dataset>-<model> (local store or MLFLOW_TRACKING_URI), tagged with its DVC "
        "experiment, commit, data digest and accuracies. The alias @champion moves to it only "
        "if its validation accuracy beats the champion's on the same data (--force: anyway).")
    promote.add_argument("--model", help="the workspace's model (models/<model>/), or with "
                         "--exp the experiment's")
    promote.add_argument("--exp", help="a DVC experiment's name (`dvc exp show`)")
    promote.add_argument("--study", help="a sweep study (with --trial)")
    promote.add_argument("--trial", type=int, help="the trial's number in --study")
    promote.add_argument("--run", help="an MLflow run id")
    promote.add_argument("--force", action="store_true",
                         help="move @champion even if the model does not beat it")
    promote.add_argument("--onnx", action="store_true",
                         help="register the run's ONNX export (`nnlab export`) as "
                         "<dataset>-<model>-onnx")
    promote.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from nnlab.handoff import promotion

    with one_line_errors("promote", server=("nothing was promoted", "promote again")):
        run_id = promotion.find_run(args.model, args.exp, args.study, args.trial, args.run)
        promotion.promote(promotion.candidate(run_id, args.onnx), args.force)
