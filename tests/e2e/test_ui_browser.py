"""The MLflow UI a user lands on, in a real browser (headless Chromium): `nnlab ui` (what
`make ui` runs) on a trained project, the link it prints, the runs table with our runs and
their datasets, and a run's metric charts, system metrics and artifacts. Screenshots are
saved under .test-artifacts/ui/ (look at them)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from nnlab.server.settings import free_port
from tests.support.e2e import MODELS, ROOT, copy_project, serving

pytestmark = pytest.mark.slow
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / ".test-artifacts" / "ui"
VIEW = "workflowType=machine_learning"


def _browser(url: str, screenshot: str | None = None) -> tuple[str, str]:
    """(the page's DOM once its scripts ran and its charts drew, its text), and a
    screenshot of it."""
    base = [str(BROWSER), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--run-all-compositor-stages-before-draw", "--virtual-time-budget=30000",
            "--window-size=1600,1000"]
    if screenshot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        subprocess.run([*base, f"--screenshot={SHOTS / screenshot}", url],
                       capture_output=True, timeout=180, check=True)
    done = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                          timeout=180, check=True)
    text = " ".join(re.sub(r"<!--.*?-->|<[^>]+>", " ", done.stdout).split())
    return done.stdout, text


@pytest.fixture(scope="module")
def ui(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`nnlab ui` serving a copy of the trained baseline; (the link it printed, the project)."""
    if BROWSER is None:
        pytest.skip("Chromium is not installed: apt-get install chromium (.ci/run does)")
    project = copy_project(baseline, tmp_path_factory.mktemp("ui") / "project")
    port = free_port()
    log = project.parent / "ui.log"
    with serving(["nnlab", "ui", "--port", str(port)], project, port, log):
        links = re.findall(r"open (http://\S+)", log.read_text())
        assert links, "nnlab ui printed no link"
        yield links[0], project


def test_the_link_opens_the_runs_table_with_our_runs_and_their_datasets(
        ui: tuple[str, Path]) -> None:
    link, project = ui
    experiment = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}"
                                     ).get_experiment_by_name("digits")
    assert experiment is not None
    assert link.endswith(f"/#/experiments/{experiment.experiment_id}/runs?{VIEW}")
    page, text = _browser(link, "runs.png")
    assert "Model training" in text and "Token usage" not in text  # not the GenAI view
    for model in MODELS:
        assert f">{model}<" in page, model
    assert "digits-training" in text  # the Dataset column


def test_a_runs_page_shows_its_epoch_charts_system_metrics_and_plots(
        ui: tuple[str, Path]) -> None:
    link, project = ui
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id], "tags.model = 'cnn'")
    base = link.split("/#/")[0]
    page = f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    dom, text = _browser(f"{page}/model-metrics?{VIEW}", "run-metrics.png")
    charts = re.search(r"Model metrics \( ?(\d+) ?\)", text)
    assert charts and int(charts.group(1)) >= 5, "no metrics"  # loss, accuracy, ...
    assert dom.count("js-plotly-plot") >= 3 and "accuracy" in text, "no chart was drawn"
    _, text = _browser(f"{page}/system-metrics?{VIEW}")
    assert re.search(r"System metrics \( ?\d+ ?\)", text) and "cpu_utilization" in text
    _, text = _browser(f"{page}/artifacts?{VIEW}", "run-artifacts.png")
    for name in ("plots", "history.csv", "metrics.json"):
        assert name in text, name
