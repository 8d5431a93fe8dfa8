"""What every stage shares: argument parsing and turning user errors into one clean line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from nnlab.errors import USER_ERRORS
from nnlab.params import MODEL_NAMES, Params, load_params


def parse_model(argv: list[str] | None, stage: str) -> str:
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}")
    parser.add_argument("model", choices=MODEL_NAMES)
    return str(parser.parse_args(argv).model)


def run(stage: str, body: Callable[[Params], None]) -> None:
    """Load and validate params.yaml, then run `body`; user errors exit 2 with one line."""
    try:
        body(load_params())
    except USER_ERRORS as error:
        print(f"{stage}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
