"""Where the team stack lives and how it is reached: ports, credentials, the env file.

Everything sits in one data dir (default `.nnlab/server/` at the project root, git-ignored):

    stack.json        the settings of the first start (host, ports), reused by later starts
    credentials.json  S3 key and secret, MLflow admin password: made once, mode 0600
    env               the lines a user sources (MLFLOW_TRACKING_URI, ...), mode 0600
    postgres/ seaweedfs/ logs/ pids/
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import secrets
import socket
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MLFLOW_BUCKET, DVC_BUCKET = "mlflow", "dvc"
DVC_REMOTE = "team"
DATABASE = "mlflow"  # MLflow's tables; "<name>_auth" (basic-auth users), "<name>_optuna"
LOOPBACK = "127.0.0.1"
# SeaweedFS's own ports (master, volume, filer, admin and their gRPC ports): loopback only,
# picked free at the first start and kept in stack.json.
INTERNAL_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
                  "admin", "admin_grpc", "s3_grpc")


class ServerError(RuntimeError):
    """The stack cannot start or be reached (message names the part, the cause and the fix)."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reachable(host: str) -> str:
    """The address a client on this machine uses for a server bound to `host`."""
    return LOOPBACK if host in ("0.0.0.0", "::") or is_loopback(host) else host


@dataclass
class Settings:
    """How the stack is started. `host` is what the public parts (MLflow, S3, the gRPC proxy)
    bind to; PostgreSQL listens on a unix socket only and SeaweedFS's internals on loopback."""

    data_dir: Path
    host: str = LOOPBACK
    mlflow_port: int = 5000
    s3_port: int = 8333
    grpc_port: int = 13000
    postgres_port: int = 15432  # Optuna's database over TCP, password only (sweep machines)
    database_url: str | None = None  # an existing PostgreSQL instead of pgserver's
    auth: bool = False  # MLflow's basic-auth app
    insecure: bool = False  # serve a non-loopback host without MLflow auth
    workers: int = 2
    janitor_every: int = 60  # seconds between the janitor's looks for dead runs
    internal: dict[str, int] = field(default_factory=dict)

    @property
    def file(self) -> Path:
        return self.data_dir / "stack.json"

    def path(self, name: str) -> Path:
        return self.data_dir / name

    @property
    def client_host(self) -> str:
        """The host name clients on this machine use."""
        return reachable(self.host)

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.client_host}:{self.mlflow_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.client_host}:{self.s3_port}"

    @property
    def proxy_host(self) -> str:
        """The gRPC proxy has no authentication: it follows `host` only with --insecure (or
        on loopback); behind basic-auth it stays on loopback."""
        return self.host if is_loopback(self.host) or self.insecure else LOOPBACK

    @property
    def grpc_uri(self) -> str:
        return f"grpc://{reachable(self.proxy_host)}:{self.grpc_port}"

    def check(self) -> None:
        """Refuse to expose the stack without authentication unless asked to."""
        if not is_loopback(self.host) and not (self.auth or self.insecure):
            raise ServerError(
                f"--host {self.host} would serve MLflow to the network without authentication: "
                "add --auth (MLflow's basic-auth app, users and passwords) or, on a network you "
                "trust, --insecure")
        for name in ("mlflow_port", "s3_port", "grpc_port", "postgres_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise ServerError(f"--{name.replace('_', '-')} {port} is not a TCP port "
                                  "(1..65535)")

    def assign_internal_ports(self) -> None:
        """Keep the internal ports of an earlier start when they are still free."""
        taken = {self.mlflow_port, self.s3_port, self.grpc_port, self.postgres_port}
        for name in INTERNAL_PORTS:
            port = self.internal.get(name)
            if port is None or port in taken:
                port = free_port()
                while port in taken:
                    port = free_port()
            self.internal[name] = port
            taken.add(port)

    def save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        data = dataclasses.asdict(self)
        data["data_dir"] = str(self.data_dir)
        write_private(self.file, json.dumps(data, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, data_dir: Path) -> Settings | None:
        """The settings saved by an earlier start, or None."""
        file = data_dir / "stack.json"
        if not file.exists():
            return None
        try:
            data = json.loads(file.read_text())
            data["data_dir"] = data_dir
            known = {f.name for f in dataclasses.fields(cls)}
            return cls(**{key: value for key, value in data.items() if key in known})
        except (ValueError, TypeError) as error:
            raise ServerError(f"{file} is not valid ({error}): delete it, then start again "
                              "(data and credentials are kept)") from None

    def merged(self, overrides: dict[str, Any]) -> Settings:
        """These settings with the options a user gave (None = not given)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return dataclasses.replace(self, **given)


@dataclass(frozen=True)
class Credentials:
    s3_access_key: str
    s3_secret_key: str
    mlflow_admin_password: str
    mlflow_secret_key: str  # signs the basic-auth app's CSRF tokens
    optuna_password: str = ""  # role nnlab_optuna: Optuna's database over TCP

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Credentials:
        """The stack's credentials, made at the first start and kept in a 0600 file (one
        missing from an older file is made and added)."""
        file = data_dir / "credentials.json"
        known = json.loads(file.read_text()) if file.exists() else {}
        upper = string.ascii_uppercase + string.digits
        # Letters and digits only: a secret that starts with "-" is read as an option by the
        # commands it is given to (`dvc remote modify ... secret_access_key -x...` failed).
        alphanumeric = string.ascii_letters + string.digits
        made = {
            "s3_access_key": lambda: "NNLAB" + _random(upper, 15),
            "s3_secret_key": lambda: _random(alphanumeric, 40),
            "mlflow_admin_password": lambda: _random(alphanumeric, 24),
            "mlflow_secret_key": lambda: secrets.token_hex(32),
            "optuna_password": lambda: _random(alphanumeric, 32),
        }
        values = {name: known.get(name) or make() for name, make in made.items()}
        if values != known:
            write_private(file, json.dumps(values, indent=2) + "\n")
        return cls(**values)


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600 from the start, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def env_lines(settings: Settings, credentials: Credentials, optuna_url: str) -> list[str]:
    """The lines a user sources to log to the stack, sweep with it (`optuna_url`: Optuna's
    database over TCP, with its heartbeat), and the DVC remote for another machine."""
    lines = [
        f"# Written by `nnlab server start`. On this machine: source {settings.path('env')}",
        "# On another machine, replace 127.0.0.1 with this machine's host name.",
        f"export MLFLOW_TRACKING_URI={settings.mlflow_uri}",
    ]
    if settings.auth:
        lines += ["export MLFLOW_TRACKING_USERNAME=admin",
                  f"export MLFLOW_TRACKING_PASSWORD={credentials.mlflow_admin_password}"]
    lines += [
        f"export NNLAB_OPTUNA_STORAGE={optuna_url}",
        f"# DVC remote `{DVC_REMOTE}` (this machine has it in .dvc/config.local). "
        "To join from another clone:",
        f"#   dvc remote add --local -f -d {DVC_REMOTE} s3://{DVC_BUCKET}",
        f"#   dvc remote modify --local {DVC_REMOTE} endpointurl {settings.s3_endpoint}",
        f"#   dvc remote modify --local {DVC_REMOTE} access_key_id {credentials.s3_access_key}",
        f"#   dvc remote modify --local {DVC_REMOTE} secret_access_key "
        f"{credentials.s3_secret_key}",
    ]
    return lines


def masked(secret: str) -> str:
    """A credential as printed: never in full."""
    return secret[:4] + "…" if len(secret) > 8 else "…"
