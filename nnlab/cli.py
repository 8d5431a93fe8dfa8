"""The `nnlab` command.

    nnlab check [params.yaml]   (every section, as each stage would; `make run` starts with it)
    nnlab ui [--port 5000] [--link]   (`make ui`: the local MLflow UI, on the training runs)
    nnlab predict --model cnn img.png [more.png | folder ...] [--json]
    nnlab predict --model models:/mnist-cnn@champion img.png   (from MLflow, no workspace)
    nnlab promote --model cnn | --exp NAME --model cnn | --study S --trial N | --run ID [--force]
    nnlab promote --run ID --onnx   (the run's ONNX export, as <dataset>-<model>-onnx)
    nnlab export --model cnn | --model models:/mnist-cnn@champion | --run ID [--output F]
    nnlab serve --model models:/mnist-cnn@champion [--port 5001]   (MLflow's scoring server;
        --max-body-mb 16 --max-images 256 --max-pixels 40000000)
    nnlab server start [--host 0.0.0.0 --auth] | status | stop
    nnlab push | pull [dvc push/pull options]   (checks the DVC remote first)
    nnlab sweep --study lr --model numpy_dnn --trials 20 --workers 2 \\
        --sample 'learning_rate=loguniform(1e-4,1e-1)' [--set numpy_dnn.epochs=5]
        [--storage URL] [--sampler tpe|random|narrowing] [--pruner median|hyperband|none]
    nnlab sweep --study lr --report | --apply-best
    nnlab repeat --model numpy_dnn --seeds 5 [-S learning_rate=0.003] [--workers 2]
        [--against -S learning_rate=0.01]   (seed repeats: spread, paired comparison)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nnlab import __version__
from nnlab.core.errors import USER_ERRORS, storage_problem
from nnlab.handoff import command as handoff_command
from nnlab.models.catalog import MODEL_NAMES
from nnlab.search import command as sweep_command
from nnlab.search import repeat
from nnlab.server import command as server_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"nnlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="validate params.yaml, every section, and print one line",
        description="Validate the whole params file: the top level and every section, with "
        "the one-line errors the stages give. Each stage checks only its own sections.")
    check.add_argument("path", nargs="?", type=Path, default=Path("params.yaml"),
                       help="the params file (default: params.yaml)")
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
    ui = commands.add_parser(
        "ui", help="the MLflow UI on the local store, opened on the dataset's training runs",
        description="Make or check the local MLflow store (under the stages' lock), mark "
        "FAILED the runs whose process died, print the link to the dataset's runs in "
        "MLflow's model-training view, then start `mlflow ui`.")
    ui.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000, help="default: 5000")
    ui.add_argument("--link", action="store_true", help="print the link only, start nothing")
    _add_promote(commands)
    handoff_command.add_parsers(commands)
    sweep_command.add_parser(commands)
    repeat.add_parser(commands)
    server_command.add_parser(commands)
    for name in ("push", "pull"):
        transfer = commands.add_parser(
            name, help=f"`dvc {name}`, after checking that the DVC remote answers",
            description=f"Check the DVC remote (the default one, or -r NAME) with one S3 call, "
            f"then run `dvc {name}` with the same arguments. An unreachable remote, or one "
            "that refuses its credentials, fails in one line that says what to do.")
        transfer.add_argument("-r", "--remote", help="remote name (default: the default remote)")
        transfer.add_argument("dvc_args", nargs="*", metavar="DVC_ARGUMENT",
                              help=f"targets and options, passed on to `dvc {name}` as given")
    return parser


def _add_promote(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _promote(args: argparse.Namespace) -> None:
    from nnlab.handoff import promote
    from nnlab.tracking import mlflow_runs

    try:
        with mlflow_runs.server_errors("nothing was promoted", "promote again"):
            run_id = promote.find_run(args.model, args.exp, args.study, args.trial, args.run)
            promote.promote(promote.candidate(run_id, args.onnx), args.force)
    except USER_ERRORS as error:
        print(f"nnlab promote: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _export(args: argparse.Namespace) -> None:
    from nnlab.handoff import export
    from nnlab.tracking import mlflow_runs

    try:
        with mlflow_runs.server_errors("nothing was logged", "export again"):
            export.main(args.model, args.run, args.output, log=not args.no_log)
    except USER_ERRORS as error:
        print(f"nnlab export: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _serve(args: argparse.Namespace) -> None:
    from nnlab.handoff import serve
    from nnlab.tracking import mlflow_runs

    try:
        with mlflow_runs.server_errors("nothing is served", "serve again"):
            limits = serve.Limits(args.max_body_mb, args.max_images, args.max_pixels,
                                  args.client_timeout, args.max_connections)
            serve.serve(args.model, args.host, args.port, limits, args.workers)
    except USER_ERRORS as error:
        print(f"nnlab serve: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("push", "pull") and not {"-h", "--help"} & set(argv[1:]):
        _transfer(argv[0], argv[1:])  # every option is dvc's: passed on as given
        return
    args = _parser().parse_args(argv)
    try:
        _dispatch(args)
    except Exception as error:  # a write the disk refused: one line, whichever command
        problem = storage_problem(error)
        if problem is None:
            raise
        print(f"nnlab {args.command}: error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _dispatch(args: argparse.Namespace) -> None:
    if args.command == "sweep":
        sweep_command.main(args)
        return
    if args.command == "server":
        server_command.main(args)
        return
    if args.command == "repeat":
        repeat.main(args)
        return
    if args.command == "check":
        _check(args.path)
        return
    if args.command == "ui":
        _ui(args)
        return
    if args.command == "promote":
        _promote(args)
        return
    if args.command == "serve":
        _serve(args)
        return
    if args.command == "export":
        _export(args)
        return
    _predict(args)


def _predict(args: argparse.Namespace) -> None:
    from nnlab.handoff.predict import (  # late: `nnlab --help` is fast
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
        print(f"nnlab predict: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
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


def _ui(args: argparse.Namespace) -> None:
    from nnlab.tracking import ui

    try:
        ui.serve(args.host, args.port, link_only=args.link)
    except USER_ERRORS as error:
        print(f"nnlab ui: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("nnlab ui: stopped before MLflow's UI started; the store is unchanged",
              file=sys.stderr)
        raise SystemExit(130) from None


def _check(path: Path) -> None:
    from nnlab.params import load_params

    try:
        params = load_params(path)
    except USER_ERRORS as error:
        print(f"nnlab check: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"nnlab check: {path} is valid: seed {params.seed}, {len(params.sections)} sections, "
          f"models {', '.join(params.models)}")


def _transfer(command: str, dvc_args: list[str]) -> None:
    """`nnlab push|pull [dvc options]`: check the remote (`-r NAME`, else the default one),
    then become `dvc push|pull` with the same arguments."""
    from nnlab.core.files import project_root
    from nnlab.server import remote
    from nnlab.server.settings import ServerError

    name = None
    for index, arg in enumerate(dvc_args):
        if arg in ("-r", "--remote") and index + 1 < len(dvc_args):
            name = dvc_args[index + 1]
        elif arg.startswith("--remote="):
            name = arg.split("=", 1)[1]
    try:
        remote.check(project_root(), name)
    except ServerError as error:
        print(f"nnlab {command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.stdout.flush()
    os.execvp("dvc", ["dvc", command, *dvc_args])


if __name__ == "__main__":
    main()
