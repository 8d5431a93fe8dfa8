"""`nnlab check [params.yaml]`: the whole params file, every section, as each stage would
check its own; `make run` starts with it."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnlab.cli.one_line_errors import one_line_errors


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check", help="validate params.yaml, every section, and print one line",
        description="Validate the whole params file: the top level and every section, with "
        "the one-line errors the stages give. Each stage checks only its own sections.")
    check.add_argument("path", nargs="?", type=Path, default=Path("params.yaml"),
                       help="the params file (default: params.yaml)")
    check.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from nnlab.params import load_params

    with one_line_errors("check"):
        params = load_params(args.path)
    print(f"nnlab check: {args.path} is valid: seed {params.seed}, {len(params.sections)} "
          f"sections, models {', '.join(params.models)}")
