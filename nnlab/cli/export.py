"""`nnlab export --model M`: a trained model as an ONNX file, checked in onnxruntime and logged
to its run; the work is nnlab/handoff/onnx_copy.py."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnlab.cli.one_line_errors import one_line_errors


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export", help="a trained model as an ONNX file, checked in onnxruntime and logged to "
        "its run", description="Write an ONNX file (uint8 images (N, H, W, C) in, "
        "probabilities out) after checking it against the model in onnxruntime, and log it to "
        "the model's run as MLflow's onnx flavor (`nnlab promote --onnx` registers it).")
    export.add_argument("--model", metavar="MODEL",
                        help="the workspace's model (e.g. cnn) or models:/NAME@ALIAS")
    export.add_argument("--run", help="an MLflow run id")
    export.add_argument("--output", type=Path,
                        help="the file to write (default: exports/<model>.onnx)")
    export.add_argument("--no-log", action="store_true",
                        help="only write the file; log nothing to MLflow")
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from nnlab.handoff import onnx_copy

    with one_line_errors("export", server=("nothing was logged", "export again")):
        onnx_copy.main(args.model, args.run, args.output, log=not args.no_log)
