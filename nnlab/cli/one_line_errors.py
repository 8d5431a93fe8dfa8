"""The one wrapper every subcommand runs in: an error a user can fix is one line on stderr,
`nnlab <command>: error: <cause and fix>`, and an exit code, never a traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn

from nnlab.core.errors import USER_ERRORS


def fail(command: str, message: object, code: int = 2) -> NoReturn:
    """Print `nnlab <command>: error: <message>` and exit with `code`."""
    print(f"nnlab {command}: error: {message}", file=sys.stderr)
    raise SystemExit(code) from None


@contextlib.contextmanager
def one_line_errors(command: str, *, server: tuple[str, str] | None = None,
                    errors: tuple[type[BaseException], ...] = USER_ERRORS,
                    code: int = 2) -> Iterator[None]:
    """Run a subcommand's body; `errors` become one line and exit `code`. `server`: what was
    not done and what to do again, for a command that talks to an MLflow server (an
    unreachable or refusing server is one line that names it)."""
    try:
        with contextlib.ExitStack() as stack:
            if server:
                from nnlab.tracking import mlflow_runs  # late: MLflow's import is slow

                stack.enter_context(mlflow_runs.server_errors(*server))
            yield
    except errors as error:
        fail(command, error, code)
