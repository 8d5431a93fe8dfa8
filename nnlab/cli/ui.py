"""`nnlab ui` (`make ui`): the local MLflow UI, on the dataset's training runs; the work is
nnlab/server/mlflow_ui.py."""

from __future__ import annotations

import argparse
import sys

from nnlab.cli.one_line_errors import one_line_errors


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ui = commands.add_parser(
        "ui", help="the MLflow UI on the local store, opened on the dataset's training runs",
        description="Make or check the local MLflow store (under the stages' lock), mark "
        "FAILED the runs whose process died, print the link to the dataset's runs in "
        "MLflow's model-training view, then start `mlflow ui`.")
    ui.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000, help="default: 5000")
    ui.add_argument("--link", action="store_true", help="print the link only, start nothing")
    ui.set_defaults(handler=run)


def _dataset() -> str | None:
    """The dataset params.yaml trains on, the name of its MLflow experiment; None (the UI
    opens on every experiment) when params.yaml is missing or has no `data.dataset`."""
    from nnlab.core.files import project_root
    from nnlab.core.schema import ParamsError
    from nnlab.params import read

    try:
        return str(read(project_root() / "params.yaml")["data"]["dataset"])
    except (ParamsError, KeyError, TypeError):
        return None


def run(args: argparse.Namespace) -> None:
    from nnlab.server import mlflow_ui

    try:
        with one_line_errors("ui"):
            mlflow_ui.serve(args.host, args.port, _dataset(), link_only=args.link)
    except KeyboardInterrupt:
        print("nnlab ui: stopped before MLflow's UI started; the store is unchanged",
              file=sys.stderr)
        raise SystemExit(130) from None
