"""The MLflow UI a user lands on, in a real browser (headless Chromium): `nnlab ui` (what
`make ui` runs) on a trained project, the link it prints, the runs table with our runs and
their datasets, and a run's metric charts, system metrics and artifacts. Screenshots are
saved under .test-artifacts/ui/ (look at them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from nnlab.server.settings import free_port
from tests.support.browser import BROWSER, MISSING
from tests.support.browser import page as browse
from tests.support.e2e import MODELS, copy_project, serving

pytestmark = pytest.mark.slow
VIEW = "workflowType=machine_learning"


@pytest.fixture(scope="module")
def ui(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`nnlab ui` serving a copy of the trained baseline; (the link it printed, the project)."""
    if BROWSER is None:
        pytest.skip(MISSING)
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
    page, text = browse(link, "runs.png")
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
    dom, text = browse(f"{page}/model-metrics?{VIEW}", "run-metrics.png")
    charts = re.search(r"Model metrics \( ?(\d+) ?\)", text)
    assert charts and int(charts.group(1)) >= 5, "no metrics"  # loss, accuracy, ...
    assert dom.count("js-plotly-plot") >= 3 and "accuracy" in text, "no chart was drawn"
    _, text = browse(f"{page}/system-metrics?{VIEW}")
    assert re.search(r"System metrics \( ?\d+ ?\)", text) and "cpu_utilization" in text
    _, text = browse(f"{page}/artifacts?{VIEW}", "run-artifacts.png")
    for name in ("plots", "history.csv", "metrics.json"):
        assert name in text, name
