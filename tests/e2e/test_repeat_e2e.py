"""`nnlab repeat` end to end on a copy of the trained baseline: seed repeats as real DVC
experiments that rerun numpy_dnn's stages and the report only, grouped MLflow runs, a second
run that trains nothing, and a diverging configuration that is counted, not fatal. Then the
MLflow UI in a real browser, on the view the repeat's link opens: runs named after their
experiments, grouped by repeat, with their intervals as columns (screenshot:
.test-artifacts/ui/repeats.png)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest

from nnlab.server.settings import free_port
from tests.support.browser import BROWSER, MISSING
from tests.support.browser import page as browse
from tests.support.e2e import copy_project, git, ran_stages, serving, user_env
from tests.support.e2e import run as sh

pytestmark = pytest.mark.slow

SHORT = ["-S", "epochs=6"]  # numpy_dnn trains 6 epochs a repeat: the test is about the plumbing


def _refs(project: Path) -> list[str]:
    return git(project, "for-each-ref", "--format=%(refname)", "refs/exps").split()


@pytest.fixture(scope="module")
def project(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(baseline, tmp_path_factory.mktemp("repeat") / "project")


def test_repeats_rerun_only_the_models_stages_group_their_runs_and_are_reused(
        project: Path) -> None:
    first = sh(["nnlab", "repeat", "--model", "numpy_dnn", "--seeds", "3", *SHORT,
                "--workers", "2"], project)
    refs = _refs(project)
    names = sorted(ref.rsplit("/", 1)[-1] for ref in refs)
    assert len(names) == 3 and all(name.startswith("rep-") for name in names), refs
    assert [name.rsplit("-s", 1)[1] for name in names] == ["42", "43", "44"]
    for name in names:  # exactly numpy_dnn's stages and the report, nothing upstream
        log = (project / ".nnlab" / "repeats" / f"{name}.log").read_text()
        assert ran_stages(log) == {"train@numpy_dnn", "evaluate@numpy_dnn", "report"}, name
    written = re.search(r"wrote (reports/repeats/numpy_dnn-\w+)\.md and \.json", first)
    assert written, first
    report = project / f"{written.group(1)}.json"
    found = json.loads(report.read_text())
    spread = found["configurations"][0]["metrics"]["test.accuracy"]
    assert found["configurations"][0]["seeds"] == [42, 43, 44] and spread["n"] == 3
    assert spread["interval"][0] <= spread["mean"] <= spread["interval"][1]
    assert "| test.accuracy |" in first and "95% interval of the mean" in first

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    grouped = client.search_runs([experiment.experiment_id],
                                 "tags.`nnlab.repeat` LIKE 'numpy_dnn%'")
    repeats = [run for run in grouped if run.data.tags["nnlab.repeat.role"] == "repeat"]
    summaries = [run for run in grouped if run.data.tags["nnlab.repeat.role"] == "summary"]
    assert sorted(run.data.tags["nnlab.repeat.seed"] for run in repeats) == ["42", "43", "44"]
    assert len({run.data.tags["nnlab.repeat"] for run in grouped}) == 1 and len(summaries) == 1
    for run in repeats:
        assert run.info.status == "FINISHED" and run.data.params["seed"] in ("42", "43", "44")
        assert run.info.run_name == f"numpy_dnn@{run.data.tags['dvc.exp_name']}"
        assert "test.accuracy_low" in run.data.metrics
    assert summaries[0].data.metrics["test.accuracy.mean"] == pytest.approx(spread["mean"])
    artifacts = {item.path for item in client.list_artifacts(summaries[0].info.run_id)}
    assert {report.name, report.with_suffix(".md").name} <= artifacts

    # The same command again: every repeat reused, no experiment run, no new MLflow run.
    runs_before = len(client.search_runs([experiment.experiment_id], max_results=1000))
    again = sh(["nnlab", "repeat", "--model", "numpy_dnn", "--seeds", "3", *SHORT], project)
    assert "3 repeat(s) already finished, 0 to run" in again and _refs(project) == refs
    assert len(client.search_runs([experiment.experiment_id], max_results=1000)) == runs_before
    assert again.count("| test.accuracy |") == 1

    # Against a configuration that diverges: seeds 42 and 43 of the first are reused, the two
    # diverging repeats fail, are counted with their reason, and end FAILED, not RUNNING.
    with open(project.parent / "diverging.log", "w") as log:  # a file: dvc's children hold it
        code = subprocess.run(["nnlab", "repeat", "--model", "numpy_dnn", "--seeds", "2", *SHORT,
                               "--against", *SHORT, "-S", "learning_rate=10"], cwd=project,
                              env=user_env(), stdout=log, stderr=subprocess.STDOUT,
                              timeout=1800).returncode
    diverging = (project.parent / "diverging.log").read_text()
    assert code == 1, diverging  # one side has no result at all
    assert diverging.strip().splitlines()[-1].startswith(
        "nnlab repeat: error: no repeat of epochs=6, learning_rate=10 finished (seed 42: ")
    assert "2 repeat(s) already finished, 2 to run" in diverging
    assert diverging.count("has no result:") == 2 and "lower numpy_dnn.learning_rate" in diverging
    assert "not comparable: 0 seed(s) finished on both sides" in diverging
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len(runs) == runs_before + 3  # two failed repeats and the second group's summary
    assert not [run for run in runs if run.info.status == "RUNNING"]


def test_the_mlflow_ui_shows_experiments_by_name_and_repeats_grouped(project: Path) -> None:
    """After the test above: its repeats, and an ordinary experiment beside them. Another
    model's experiment in the workspace leaves numpy_dnn's repeats reusable."""
    if BROWSER is None:
        pytest.skip(MISSING)
    sh(["dvc", "exp", "run", "--name", "plain-logreg", "-S", "logreg.C=0.5"], project)
    output = sh(["nnlab", "repeat", "--model", "numpy_dnn", "--seeds", "3", *SHORT], project)
    assert "3 repeat(s) already finished, 0 to run" in output
    links = re.findall(r"(http://127\.0\.0\.1:5000/\S+viewStateShareKey=\S+)", output)
    assert links, output
    port = free_port()
    with serving(["nnlab", "ui", "--port", str(port)], project, port,
                 project.parent / "ui.log"):
        dom, text = browse(links[0].replace(":5000/", f":{port}/"), "repeats.png")
    assert "Group by: nnlab.repeat" in text, text[:2000]
    assert "numpy_dnn@rep-" in text and "logreg@plain-logreg" in text
    assert "test.accuracy_low" in text and "test.accuracy.mean" in text
    assert "Group:" in text and "numpy_dnn: epochs=6" in text


def test_a_stopped_repeat_starts_no_new_one_and_leaves_no_run_running(project: Path) -> None:
    """SIGTERM to the command alone (as a scheduler sends it) while its first repeats train:
    none of the queued repeats starts, the running ones stop, their runs end KILLED."""
    long = ["-S", "epochs=5000", "-S", "early_stopping_patience=null"]
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    refs = _refs(project)
    with open(project.parent / "stop.log", "w") as log:
        process = subprocess.Popen(
            ["nnlab", "repeat", "--model", "numpy_dnn", "--seeds", "4", "--workers", "2", *long],
            cwd=project, env=user_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while not client.search_runs([experiment.experiment_id],
                                         "attributes.status = 'RUNNING'"):
                assert process.poll() is None and time.monotonic() < deadline, \
                    (project.parent / "stop.log").read_text()
                time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=120) == 130
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    output = (project.parent / "stop.log").read_text()
    assert output.strip().splitlines()[-1].startswith("nnlab repeat: stopped;"), output
    assert "Traceback" not in output
    runs = client.search_runs([experiment.experiment_id], "tags.`dvc.exp_name` LIKE 'rep-%'",
                              max_results=1000)
    assert not [run for run in runs if run.info.status == "RUNNING"]
    stopped = [run for run in runs if run.data.params.get("epochs") == "5000"]
    assert 1 <= len(stopped) <= 2 and {run.info.status for run in stopped} == {"KILLED"}
    assert _refs(project) == refs  # no repeat finished, and no queued one started
