"""A newcomer opens the UI in one terminal and trains in another: `nnlab ui` (what `make ui`
runs) and a train stage, started at the same moment on a project with no MLflow store yet,
three times. Each time the store is made once, the stage logs its run, and the UI starts
(and, the last time, serves)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest

from nnlab.server.process import http_status
from nnlab.server.settings import free_port
from nnlab.tracking import store
from tests.support.e2e import copy_project, user_env

pytestmark = pytest.mark.slow
ROUNDS = 3  # 10 in a row: `python -m pytest -m loop tests/e2e/test_fault_loop.py`


def _ready(log: Path, port: int, serving: bool) -> bool:
    """`nnlab ui` has made or checked the store and handed over to `mlflow ui` (its link
    line); with `serving`, MLflow's UI answers too (checked once: it is the slow part)."""
    if "MLflow UI on" not in log.read_text(errors="replace"):
        return False
    return not serving or http_status(f"http://127.0.0.1:{port}/health") == 200


def test_the_ui_and_a_stage_started_together_on_no_store_both_work(
        baseline: Path, tmp_path: Path) -> None:
    project = copy_project(baseline, tmp_path / "project")
    for round_number in range(1, ROUNDS + 1):
        (project / "mlflow.db").unlink()
        port = free_port()
        # Each output read through its own handle: reading a file the child writes to
        # through a shared one would move the child's offset, and its lines would be lost.
        ui_log, log = tmp_path / f"ui-{round_number}.log", tmp_path / f"stage-{round_number}.log"
        with open(ui_log, "w") as ui_out, open(log, "w") as stage_out:
            ui = subprocess.Popen(["nnlab", "ui", "--port", str(port)], cwd=project,
                                  env=user_env(), stdout=ui_out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
            stage = subprocess.Popen(["python", "-m", "stages.train", "logreg"], cwd=project,
                                     env=user_env(), stdout=stage_out, stderr=subprocess.STDOUT)
            try:
                code = stage.wait(timeout=300)
                output = log.read_text(errors="replace")
                assert code == 0 and "Traceback" not in output, \
                    f"round {round_number}:\n{output[-3000:]}"
                deadline = time.monotonic() + 120
                while not _ready(ui_log, port, serving=round_number == ROUNDS):
                    assert ui.poll() is None and time.monotonic() < deadline, \
                        f"round {round_number}: the UI did not start:\n" \
                        f"{ui_log.read_text(errors='replace')[-3000:]}"
                    time.sleep(0.2)
            finally:
                if ui.poll() is None:
                    os.killpg(ui.pid, signal.SIGTERM)
                ui.wait(timeout=60)
                if stage.poll() is None:
                    stage.kill()
            assert "Traceback" not in ui_log.read_text(errors="replace")
        assert store.revision(project / "mlflow.db") == store.head_revision()
        client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("digits")
        assert experiment is not None
        (found,) = client.search_runs([experiment.experiment_id])
        assert found.info.status == "FINISHED"
