"""`nnlab push | pull [dvc options]`: `dvc push` / `dvc pull`, after one S3 call that checks
the DVC remote answers (nnlab/server/dvc_remote.py)."""

from __future__ import annotations

import argparse
import os
import sys

from nnlab.cli.one_line_errors import one_line_errors

COMMANDS = ("push", "pull")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The parsers exist for `--help`: `nnlab.cli.main` hands every other argument on to dvc
    as given (`transfer`)."""
    for name in COMMANDS:
        transfer_parser = commands.add_parser(
            name, help=f"`dvc {name}`, after checking that the DVC remote answers",
            description=f"Check the DVC remote (the default one, or -r NAME) with one S3 call, "
            f"then run `dvc {name}` with the same arguments. An unreachable remote, or one "
            "that refuses its credentials, fails in one line that says what to do.")
        transfer_parser.add_argument("-r", "--remote",
                                     help="remote name (default: the default remote)")
        transfer_parser.add_argument("dvc_args", nargs="*", metavar="DVC_ARGUMENT",
                                     help=f"targets and options, passed on to `dvc {name}` "
                                     "as given")
        transfer_parser.set_defaults(handler=lambda args: transfer(
            args.command, [*(["-r", args.remote] if args.remote else []), *args.dvc_args]))


def transfer(command: str, dvc_args: list[str]) -> None:
    """Check the remote (`-r NAME`, else the default one), then become `dvc push|pull` with
    the same arguments."""
    from nnlab.core.files import project_root
    from nnlab.server import dvc_remote
    from nnlab.server.settings import ServerError

    name = None
    for index, arg in enumerate(dvc_args):
        if arg in ("-r", "--remote") and index + 1 < len(dvc_args):
            name = dvc_args[index + 1]
        elif arg.startswith("--remote="):
            name = arg.split("=", 1)[1]
    with one_line_errors(command, errors=(ServerError,)):
        dvc_remote.check(project_root(), name)
    sys.stdout.flush()
    os.execvp("dvc", ["dvc", command, *dvc_args])
