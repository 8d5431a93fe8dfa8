"""The `nnlab` command: one parser, each subcommand's options and body in its own module.

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
import sys

from nnlab import __version__
from nnlab.cli import (
    check,
    export,
    join,
    predict,
    promote,
    remote,
    repeat,
    serve,
    server,
    sweep,
    ui,
)
from nnlab.cli.one_line_errors import fail
from nnlab.core.errors import storage_problem

# In `nnlab --help`'s order. Each module adds its parser(s), its `run` as their handler.
SUBCOMMANDS = (check, predict, ui, promote, export, serve, server, remote, sweep, repeat,
               join)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="nnlab", description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"nnlab {__version__}")
    commands = top.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(commands)
    return top


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in remote.COMMANDS and not {"-h", "--help"} & set(argv[1:]):
        remote.transfer(argv[0], argv[1:])  # every option is dvc's: passed on as given
        return
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except Exception as error:  # a write the disk refused: one line, whichever command
        problem = storage_problem(error)
        if problem is None:
            raise
        fail(args.command, problem)


if __name__ == "__main__":
    main()
