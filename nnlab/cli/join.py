"""`nnlab join --model cnn --process-id 1 [--coordinator host:port]`: this machine joins the
training of several processes that `dvc repro` runs as process 0 on another (docs/devices.md,
"Several machines"); the work is nnlab/training/joiner.py."""

from __future__ import annotations

import argparse
import sys

from nnlab.cli.one_line_errors import fail, one_line_errors
from nnlab.core import quiet, stops
from nnlab.core.errors import Interrupted

KERAS_MODELS = ("keras_mlp", "cnn")  # the models that train on JAX's distributed runtime


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "join", help="train a model together with process 0 (`dvc repro` on another machine)",
        description="Join a training of several processes (the model's `processes` in "
        "params.yaml): report to process 0 at its coordinator, which checks that this checkout "
        "has its commit, params and data, then train this process's share of every batch. "
        "Process 0 writes the model, the checkpoint and the MLflow run; this prints a line at "
        "the start and one at the end.")
    parser.add_argument("--model", required=True, choices=KERAS_MODELS)
    parser.add_argument("--process-id", required=True, type=int, metavar="N",
                        help="this process's number, 1 to processes-1, one per machine")
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="process 0's address as this machine reaches it (default: the "
                        "model's `coordinator` in params.yaml)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from nnlab.params import load_params
    from nnlab.training.joiner import join  # late: Keras's import is slow

    stops.catch_signals()
    name = f"join@{args.model}"
    try:
        with quiet.filtered_stderr(), one_line_errors("join"):  # TensorFlow's C++ banners
            if args.coordinator is not None:
                from nnlab.models.keras.section import check_host_port

                check_host_port(args.coordinator, "--coordinator")
            done = join(args.model, load_params(sections=("data", args.model)),
                        args.process_id, args.coordinator)
    except Interrupted as stop:
        fail("join", f"stopped by {stop.signal_name}; the other processes stop too, and "
             f"process 0's checkpoint is kept", 128 + stop.signal_number)
    print(f"{name}: process {done['process']} of {done['processes']} done after "
          f"{done['epochs']} epochs; process 0 saves the model and logs the MLflow run",
          file=sys.stderr)
