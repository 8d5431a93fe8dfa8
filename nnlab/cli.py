"""The `nnlab` command.

    nnlab check [params.yaml]   (every section, as each stage would; `make run` starts with it)
    nnlab ui [--port 5000] [--link]   (`make ui`: the local MLflow UI, on the training runs)
    nnlab predict --model cnn img.png [more.png | folder ...] [--json]
    nnlab server start [--host 0.0.0.0 --auth] | status | stop
    nnlab push | pull [dvc push/pull options]   (checks the DVC remote first)
    nnlab sweep --study lr --model numpy_dnn --trials 20 --workers 2 \\
        --sample 'learning_rate=loguniform(1e-4,1e-1)' [--set numpy_dnn.epochs=5]
        [--storage URL] [--sampler tpe|random|narrowing] [--pruner median|hyperband|none]
    nnlab sweep --study lr --report | --apply-best
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nnlab.core.errors import USER_ERRORS
from nnlab.models.registry import MODEL_NAMES
from nnlab.search import command as sweep_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="validate params.yaml, every section, and print one line",
        description="Validate the whole params file: the top level and every section, with "
        "the one-line errors the stages give. Each stage checks only its own sections.")
    check.add_argument("path", nargs="?", type=Path, default=Path("params.yaml"),
                       help="the params file (default: params.yaml)")
    predict = commands.add_parser(
        "predict", help="top-3 classes of image files, for a model trained by `dvc repro`",
        description="Print the 3 most likely classes of each image, using the model in "
        "models/<model> and the preprocessing it was trained with (size, grey/RGB, scaling).",
    )
    predict.add_argument("--model", required=True, choices=MODEL_NAMES)
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                         help="image files, or folders searched for images (recursively)")
    predict.add_argument("--models-dir", type=Path, default=Path("models"),
                         help="where `dvc repro` put the models (default: models)")
    predict.add_argument("--top", type=int, default=3, help="classes per image (default: 3)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    ui = commands.add_parser(
        "ui", help="the MLflow UI on the local store, opened on the dataset's training runs",
        description="Make or check the local MLflow store (under the stages' lock), mark "
        "FAILED the runs whose process died, print the link to the dataset's runs in "
        "MLflow's model-training view, then start `mlflow ui`.")
    ui.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000, help="default: 5000")
    ui.add_argument("--link", action="store_true", help="print the link only, start nothing")
    sweep_command.add_parser(commands)
    _add_server(commands)
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


def _add_server(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = commands.add_parser(
        "server", help="the team stack: MLflow server on PostgreSQL, S3 artifacts, DVC remote",
        description="Start, inspect or stop the team stack: PostgreSQL (pgserver), SeaweedFS "
        "S3, `mlflow server` (artifacts in S3) and Optuna's gRPC storage proxy, all from the "
        "lock file. Everything lives in --data-dir; a restart loses nothing.",
    )
    server.add_argument("action", choices=["start", "status", "stop"])
    server.add_argument("--data-dir", type=Path, default=None,
                        help="where the stack keeps its data (default: .nnlab/server at the "
                        "project root)")
    given = "default: 127.0.0.1, or what the first start used"
    server.add_argument("--host", help=f"address MLflow and S3 bind to ({given}); a "
                        "non-loopback host needs --auth or --insecure")
    server.add_argument("--mlflow-port", type=int, help="default: 5000")
    server.add_argument("--s3-port", type=int, help="default: 8333")
    server.add_argument("--grpc-port", type=int, help="Optuna's gRPC proxy (default: 13000)")
    server.add_argument("--postgres-port", type=int, help="Optuna's database over TCP, for "
                        "sweep machines (password; default: 15432)")
    server.add_argument("--database-url", metavar="postgresql+psycopg://...",
                        help="an existing PostgreSQL instead of the bundled one")
    server.add_argument("--auth", action="store_true", default=None,
                        help="MLflow's basic-auth app (user admin, password in credentials.json)")
    server.add_argument("--insecure", action="store_true", default=None,
                        help="allow a non-loopback --host without MLflow authentication")
    server.add_argument("--workers", type=int, help="MLflow server workers (default: 2)")
    server.add_argument("--janitor-every", type=int, metavar="SECONDS",
                        help="how often runs whose process is gone are ended (default: 60)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("push", "pull") and not {"-h", "--help"} & set(argv[1:]):
        _transfer(argv[0], argv[1:])  # every option is dvc's: passed on as given
        return
    args = _parser().parse_args(argv)
    if args.command == "sweep":
        sweep_command.main(args)
        return
    if args.command == "server":
        _server(args)
        return
    if args.command == "check":
        _check(args.path)
        return
    if args.command == "ui":
        _ui(args)
        return
    from nnlab.predict import predict  # late: `nnlab --help` should not load TensorFlow

    try:
        predictions, skipped = predict(args.models_dir / args.model, args.images, top=args.top)
    except USER_ERRORS as error:
        print(f"nnlab predict: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.json:
        print(json.dumps([item.as_dict() for item in predictions], indent=2))
    else:
        for item in predictions:
            ranked = ", ".join(f"{name} {probability:.1%}" for name, probability in item.top)
            print(f"{item.image}: {ranked}")
    for path, reason in skipped:  # stderr: stdout stays one line (or JSON) per prediction
        print(f"nnlab predict: skipped {path}: {reason}", file=sys.stderr)
    if skipped:
        print(f"nnlab predict: {len(predictions)} image(s) predicted, {len(skipped)} "
              "file(s) skipped", file=sys.stderr)


def _ui(args: argparse.Namespace) -> None:
    from nnlab import ui

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


def _say(line: str) -> None:
    """Print a progress line; a closed stdout (`| head`) must not abort a start half-way."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process


def _server(args: argparse.Namespace) -> None:
    from nnlab.core.files import project_root
    from nnlab.server import stack
    from nnlab.server.settings import ServerError

    project = project_root()
    data_dir = (args.data_dir or project / ".nnlab" / "server").resolve()
    try:
        if args.action == "start":
            options = {name: getattr(args, name) for name in (
                "host", "mlflow_port", "s3_port", "grpc_port", "postgres_port", "database_url",
                "auth", "insecure", "workers", "janitor_every")}
            stack.start(data_dir, options, project if (project / ".dvc").is_dir() else None,
                        report=_say)
        elif args.action == "stop":
            if not stack.stop(data_dir, report=_say):
                print(f"nnlab server: nothing to stop: no stack was started in {data_dir}")
        else:
            rows = stack.status(data_dir)
            if not rows:
                print(f"nnlab server: no stack in {data_dir}: start one with `make server`")
                raise SystemExit(3)
            print(f"{'part':<12} {'state':<5} address (data in {data_dir})")
            for row in rows:
                print(f"{row.name:<12} {'up' if row.up else 'down':<5} {row.address}")
            if not all(row.up for row in rows):
                raise SystemExit(3)
    except ServerError as error:
        print(f"nnlab server: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
