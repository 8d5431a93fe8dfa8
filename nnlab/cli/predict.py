"""`nnlab predict --model M IMAGE...`: the top classes of image files, for the workspace's
model or one in MLflow's registry; the work is nnlab/handoff/prediction.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nnlab.cli.one_line_errors import fail
from nnlab.core.catalog import MODEL_NAMES
from nnlab.core.errors import USER_ERRORS


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    predict = commands.add_parser(
        "predict", help="top-3 classes of image files, for a model trained by `dvc repro` "
        "or one in MLflow (models:/NAME@champion)",
        description="Print the 3 most likely classes of each image, using the model in "
        "models/<model> and the preprocessing it was trained with (size, grey/RGB, scaling).",
    )
    predict.add_argument("--model", required=True, metavar="MODEL",
                         help=f"one of {', '.join(MODEL_NAMES)} (the workspace's model), or an "
                         "MLflow model URI: models:/NAME@champion, models:/NAME/VERSION")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                         help="image files, or folders searched for images (recursively)")
    predict.add_argument("--models-dir", type=Path, default=Path("models"),
                         help="where `dvc repro` put the models (default: models)")
    predict.add_argument("--top", type=int, default=3, help="classes per image (default: 3)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    predict.add_argument("--plot", type=Path, metavar="OUT.png",
                         help="also draw each image beside its class probabilities (the first "
                         "16 images)")
    predict.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from nnlab.handoff.prediction import (  # late: `nnlab --help` is fast
        Unplotted,
        predict,
        predict_registered,
    )
    from nnlab.tracking import mlflow_runs

    plot_error = ""
    try:
        if args.model.startswith("models:/"):
            with mlflow_runs.server_errors("nothing was predicted", "predict again"):
                predictions, skipped = predict_registered(args.model, args.images,
                                                          top=args.top, plot=args.plot)
        elif args.model in MODEL_NAMES:
            predictions, skipped = predict(args.models_dir / args.model, args.images,
                                           top=args.top, plot=args.plot)
        else:
            raise ValueError(f"--model {args.model!r}: give one of {', '.join(MODEL_NAMES)}, "
                             "or an MLflow model URI such as models:/digits-cnn@champion")
    except Unplotted as unplotted:  # the predictions first, then why there is no plot
        predictions, skipped, plot_error = unplotted.predictions, unplotted.skipped, \
            str(unplotted)
    except USER_ERRORS as error:
        fail("predict", error)
    if args.json:
        print(json.dumps([item.as_dict() for item in predictions], indent=2))
    else:
        for item in predictions:
            ranked = ", ".join(f"{name} {probability:.1%}" for name, probability in item.top)
            print(f"{item.image}: {ranked}")
    if args.plot and not plot_error:
        print(f"nnlab predict: drew {min(len(predictions), 16)} image(s) and their "
              f"probabilities in {args.plot}", file=sys.stderr)
    for path, reason in skipped:  # stderr: stdout stays one line (or JSON) per prediction
        print(f"nnlab predict: skipped {path}: {reason}", file=sys.stderr)
    if skipped:
        print(f"nnlab predict: {len(predictions)} image(s) predicted, {len(skipped)} "
              "file(s) skipped", file=sys.stderr)
    if plot_error:
        print(f"nnlab predict: error: {plot_error}", file=sys.stderr)
        raise SystemExit(1)
