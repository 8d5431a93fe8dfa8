"""`nnlab export` on the trained baseline: every model as ONNX, whose onnxruntime
probabilities equal the model's (what `nnlab predict` uses) on the whole test set; and a
promoted Keras cnn served by `nnlab serve` natively and as ONNX, both answering MLflow's own
Keras pyfunc's probabilities."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import onnxruntime
import pytest

from nnlab.handoff import export
from nnlab.models.base import get_model_class
from nnlab.models.catalog import MODEL_NAMES
from nnlab.server.settings import free_port
from tests.support.e2e import copy_project, run, serving, user_env

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]


def test_every_model_exports_to_onnx_with_its_probabilities(baseline: Path,
                                                            tmp_path: Path) -> None:
    images = np.load(baseline / "data/prepared/test_images.npy", allow_pickle=False)
    for model in MODEL_NAMES:
        source = export.workspace_source(model, baseline)
        path = tmp_path / f"{model}.onnx"
        export.export(source, path, images)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["images"]
        assert session.get_inputs()[0].type == "tensor(uint8)"
        exported = session.run(["probabilities"], {"images": images})[0]
        classifier = get_model_class(model).load(baseline / "models" / model)
        np.testing.assert_allclose(exported, classifier.predict_proba(images), atol=1e-5,
                                   err_msg=model)


def _answers(port: int, images: np.ndarray) -> np.ndarray:
    body = json.dumps({"inputs": images.tolist()}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        predictions = json.load(response)["predictions"]
    classes = list(predictions[0]["probabilities"])
    return np.array([[row["probabilities"][name] for name in classes] for row in predictions])


def test_a_promoted_cnn_is_served_natively_and_as_onnx_with_mlflows_probabilities(
        baseline: Path, tmp_path: Path) -> None:
    project = copy_project(baseline, tmp_path / "project")
    env = {**user_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    run(["nnlab", "promote", "--model", "cnn"], project, env=env)
    exported = run(["nnlab", "export", "--model", "cnn"], project, env=env)
    assert "onnxruntime matches the model within" in exported, exported
    run_id = json.loads((project / "models/cnn/train_info.json").read_text())["mlflow_run_id"]
    promoted = run(["nnlab", "promote", "--run", run_id, "--onnx"], project, env=env)
    assert "-cnn-onnx@champion -> version 1" in promoted, promoted
    dataset = json.loads((project / "models/cnn/train_info.json").read_text())["dataset"]
    images = np.load(project / "data/prepared/test_images.npy", allow_pickle=False)[:64]
    uri = f"models:/{dataset}-cnn@champion"
    before = mlflow.get_tracking_uri()  # set by an earlier test of this worker, maybe
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        mlflows = np.asarray(mlflow.pyfunc.load_model(uri).predict(images))  # model.predict()
    finally:
        mlflow.set_tracking_uri(before)
    for served in (uri, f"models:/{dataset}-cnn-onnx@champion"):
        port = free_port()
        with serving(["nnlab", "serve", "--model", served, "--port", str(port)], project,
                     port, tmp_path / "serve.log", env):
            np.testing.assert_allclose(_answers(port, images), mlflows, atol=1e-5,
                                       err_msg=served)
