"""The team stack's glue without its engines: settings, credentials, the env file, the
refusal to expose an unauthenticated server, and the one-line errors for a tracking server or
DVC remote that is down (against closed loopback ports)."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from pathlib import Path

import pytest

from nnlab.core.errors import TrackingServerError
from nnlab.server import dvc_remote
from nnlab.server.settings import (
    INTERNAL_PORTS,
    Credentials,
    ServerError,
    Settings,
    env_lines,
    free_port,
    masked,
)
from nnlab.tracking import mlflow_runs


def test_a_network_host_needs_auth_or_insecure(tmp_path: Path) -> None:
    Settings(tmp_path).check()  # loopback: fine
    with pytest.raises(ServerError, match=r"--host 0\.0\.0\.0 .* add --auth .* --insecure"):
        Settings(tmp_path, host="0.0.0.0").check()
    Settings(tmp_path, host="0.0.0.0", auth=True).check()
    Settings(tmp_path, host="0.0.0.0", insecure=True).check()
    with pytest.raises(ServerError, match="--mlflow-port 70000 is not a TCP port"):
        Settings(tmp_path, mlflow_port=70000).check()


def test_the_grpc_proxy_has_no_auth_so_it_leaves_loopback_only_with_insecure(
        tmp_path: Path) -> None:
    assert Settings(tmp_path, host="0.0.0.0", auth=True).proxy_host == "127.0.0.1"
    assert Settings(tmp_path, host="0.0.0.0", insecure=True).proxy_host == "0.0.0.0"
    # Clients on this machine use loopback, whatever the stack binds to.
    assert Settings(tmp_path, host="0.0.0.0", insecure=True).mlflow_uri == \
        "http://127.0.0.1:5000"
    assert Settings(tmp_path, host="10.1.2.3", auth=True).mlflow_uri == "http://10.1.2.3:5000"


def test_credentials_are_made_once_and_only_the_owner_reads_them(tmp_path: Path) -> None:
    first = Credentials.load_or_create(tmp_path)
    file = tmp_path / "credentials.json"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert Credentials.load_or_create(tmp_path) == first
    assert len(first.s3_secret_key) >= 30 and first.s3_access_key != first.s3_secret_key
    # A file from an older version lacks a key: it is made and added, the others kept.
    old = json.loads(file.read_text())
    del old["mlflow_secret_key"]
    file.write_text(json.dumps(old))
    again = Credentials.load_or_create(tmp_path)
    assert again.s3_secret_key == first.s3_secret_key and again.mlflow_secret_key
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert masked(first.s3_secret_key) == first.s3_secret_key[:4] + "…"


def test_made_secrets_are_letters_and_digits_so_no_command_reads_one_as_an_option(
        tmp_path: Path) -> None:
    """A fresh-clone `make test` failed once: the S3 secret began with "-", and `dvc remote
    modify --local team secret_access_key -pbhz...` (as the env file says to run) took it
    for an option. Every generated secret is alphanumeric now."""
    for index in range(50):
        credentials = Credentials.load_or_create(tmp_path / str(index))
        for secret in (credentials.s3_access_key, credentials.s3_secret_key,
                       credentials.mlflow_admin_password, credentials.mlflow_secret_key):
            assert secret.isalnum() and secret.isascii(), secret
        assert len(credentials.s3_secret_key) == 40


def test_settings_persist_and_options_override_them(tmp_path: Path) -> None:
    settings = Settings(tmp_path, mlflow_port=5100)
    settings.assign_internal_ports()
    settings.save()
    assert stat.S_IMODE(settings.file.stat().st_mode) == 0o600
    loaded = Settings.load(tmp_path)
    assert loaded == settings and set(loaded.internal) == set(INTERNAL_PORTS)
    merged = loaded.merged({"mlflow_port": None, "s3_port": 9000, "auth": True})
    assert (merged.mlflow_port, merged.s3_port, merged.auth) == (5100, 9000, True)
    merged.assign_internal_ports()  # free ports of the first start are kept
    assert merged.internal == settings.internal
    assert len(set(merged.internal.values()) | {5100, 9000, 13000}) == len(INTERNAL_PORTS) + 3
    settings.file.write_text("{not json")
    with pytest.raises(ServerError, match="stack.json is not valid .* delete it"):
        Settings.load(tmp_path)


def test_the_env_file_has_the_uri_and_how_another_machine_joins(tmp_path: Path) -> None:
    credentials = Credentials.load_or_create(tmp_path)
    url = "postgresql+psycopg://nnlab_optuna:pw@127.0.0.1:15432/mlflow_optuna"
    lines = env_lines(Settings(tmp_path, mlflow_port=5001, s3_port=8001), credentials, url)
    assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:5001" in lines
    assert f"export NNLAB_OPTUNA_STORAGE={url}" in lines
    assert not [line for line in lines if "PASSWORD" in line]
    joins = [line for line in lines if line.startswith("#   dvc remote")]
    assert any("endpointurl http://127.0.0.1:8001" in line for line in joins)
    assert any(credentials.s3_secret_key in line for line in joins)
    with_auth = env_lines(Settings(tmp_path, auth=True), credentials, url)
    assert f"export MLFLOW_TRACKING_PASSWORD={credentials.mlflow_admin_password}" in with_auth


def test_a_tracking_server_that_is_down_fails_in_one_line_within_its_deadline() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    with pytest.raises(TrackingServerError) as error:
        mlflow_runs.check_server(uri, seconds=1.0)
    assert time.monotonic() - began < 5
    message = str(error.value)
    assert "\n" not in message and uri in message and "make server" in message
    assert "unset MLFLOW_TRACKING_URI" in message
    mlflow_runs.check_server("sqlite:///nowhere.db")  # a local store: nothing to check


def _dvc_repo(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / ".dvc").mkdir()
    (path / ".dvc" / "config").write_text("")
    return path


def test_push_checks_the_remote_first(tmp_path: Path) -> None:
    project = _dvc_repo(tmp_path / "project")
    with pytest.raises(ServerError, match="no DVC remote is configured: .*make server"):
        dvc_remote.check(project)
    with pytest.raises(ServerError, match="there is no DVC remote `other`"):
        dvc_remote.check(project, "other")
    port = free_port()
    settings = Settings(tmp_path / "server", s3_port=port)
    said = dvc_remote.configure(project, settings, Credentials.load_or_create(tmp_path))
    assert "DVC remote `team`" in said and "the default remote" in said
    local = (project / ".dvc" / "config.local").read_text()
    assert f"endpointurl = http://127.0.0.1:{port}" in local
    assert (project / ".dvc" / "config").read_text() == ""  # nothing secret reaches git
    with pytest.raises(ServerError) as error:
        dvc_remote.check(project)
    message = str(error.value)
    assert "\n" not in message and f"DVC remote `team` (s3://dvc at http://127.0.0.1:{port})" \
        " does not answer" in message and "make server" in message


def test_the_start_summary_never_prints_a_password_and_links_the_training_runs(
        tmp_path: Path) -> None:
    from nnlab.server import stack

    credentials = Credentials.load_or_create(tmp_path)
    lines: list[str] = []
    stack._summary(Settings(tmp_path, host="0.0.0.0", auth=True), credentials, lines.append)
    text = "\n".join(lines)
    for secret in (credentials.optuna_password, credentials.mlflow_admin_password,
                   credentials.s3_secret_key):
        assert secret not in text
    assert "NNLAB_OPTUNA_STORAGE=postgresql+psycopg://nnlab_optuna:***@127.0.0.1:15432/" in text
    assert "MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning" in text
