"""`nnlab server start|status|stop`: the team stack (nnlab/server/stack.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nnlab.cli.one_line_errors import fail


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    server.set_defaults(handler=run)


def _say(line: str) -> None:
    """Print a progress line; a closed stdout (`| head`) must not abort a start half-way."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process


def run(args: argparse.Namespace) -> None:
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
        fail("server", error)


