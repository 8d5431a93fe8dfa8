"""`nnlab export` on the trained baseline: every model as ONNX, whose onnxruntime
probabilities equal the model's (what `nnlab predict` uses) on the whole test set. Then every
logged model and its ONNX copy, promoted, loads with MLflow and its own requirements.txt in a
fresh virtualenv (docs/registry.md, "Using the model without nnlab"): `models:/` and `runs:/`
URIs, `mlflow models serve`, and `nnlab serve` natively and as ONNX, all answering what
`nnlab predict` answers."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import onnxruntime
import pytest

from nnlab.core.catalog import MODEL_NAMES
from nnlab.handoff import onnx_copy, promotion
from nnlab.handoff.prediction import registered_predictor
from nnlab.models.base import load_model, load_predictor
from nnlab.server.settings import free_port
from tests.support.e2e import copy_project, listening, serving, user_env
from tests.support.model_env import model_env

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]


def test_every_model_exports_to_onnx_with_its_probabilities(baseline: Path,
                                                            tmp_path: Path) -> None:
    images = np.load(baseline / "data/prepared/test_images.npy", allow_pickle=False)
    for model in MODEL_NAMES:
        source = onnx_copy.workspace_source(model, baseline)
        path = tmp_path / f"{model}.onnx"
        onnx_copy.export(source, path, images)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["images"]
        assert session.get_inputs()[0].type == "tensor(uint8)"
        exported = session.run(["probabilities"], {"images": images})[0]
        classifier = load_model(baseline / "models" / model, model)
        np.testing.assert_allclose(exported, classifier.predict_proba(images), atol=1e-5,
                                   err_msg=model)


LOADER = """
import importlib.util, json, sys, time
import mlflow, numpy as np
images = np.load(sys.argv[1], allow_pickle=False)
answers, seconds = {}, {}
for uri in sys.argv[3:]:
    start = time.perf_counter()
    model = mlflow.pyfunc.load_model(uri)
    answer = model.predict(images)  # an ONNX model's pyfunc: {"probabilities": ...}
    answers[uri] = np.asarray(answer["probabilities"] if isinstance(answer, dict) else answer,
                              np.float32)
    seconds[uri] = time.perf_counter() - start
np.savez(sys.argv[2], *answers.values())
print(json.dumps({"seconds": seconds, "nnlab": importlib.util.find_spec("nnlab") is not None,
                  "imported": sorted(name for name in ("nnlab", "numba", "sklearn", "tensorflow",
                                                       "onnxruntime") if name in sys.modules)}))
"""


def _post(port: int, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, object] = json.load(response)
        return answer


def _nnlab_answers(port: int, images: np.ndarray) -> np.ndarray:
    predictions = _post(port, {"inputs": images.tolist()})["predictions"]
    assert isinstance(predictions, list)
    classes = list(predictions[0]["probabilities"])
    return np.array([[row["probabilities"][name] for name in classes] for row in predictions])


def test_every_logged_model_and_its_onnx_copy_load_with_mlflow_and_their_own_requirements(
        baseline: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(baseline, tmp_path / "project")
    store = f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("DVC_ROOT", str(project))
    mlflow.set_tracking_uri(store)
    images = np.load(project / "data/prepared/test_images.npy", allow_pickle=False)
    infos = {model: json.loads((project / f"models/{model}/train_info.json").read_text())
             for model in MODEL_NAMES}
    dataset = infos["cnn"]["dataset"]
    # What `nnlab predict` runs on each workspace model, and each run exported to ONNX from
    # MLflow (`nnlab export --run`: the weights as logged, for every family) and promoted.
    expected, uris = {}, {}
    for model, info in infos.items():
        expected[model] = load_predictor(model, project / "models" / model)(images)
        onnx_copy.main(None, info["mlflow_run_id"], tmp_path / f"{model}.onnx", log=True,
                    root=project)
        assert "onnxruntime matches the model within" in capsys.readouterr().out, model
        for onnx in (False, True):
            promotion.promote(promotion.candidate(info["mlflow_run_id"], onnx),
                            report=lambda line: None)
        uris[model] = f"models:/{dataset}-{model}@champion"
        uris[f"{model} as onnx"] = f"models:/{dataset}-{model}-onnx@champion"
        expected[f"{model} as onnx"] = registered_predictor(uris[f"{model} as onnx"])(images)
    uris["numpy_dnn by run"] = f"runs:/{infos['numpy_dnn']['mlflow_run_id']}/model"
    expected["numpy_dnn by run"] = expected["numpy_dnn"]

    # One fresh environment per distinct requirements.txt: numpy's, Keras's, ONNX's.
    by_env: dict[Path, list[str]] = {}
    for name, uri in uris.items():
        requirements = Path(mlflow.pyfunc.get_model_dependencies(uri))
        assert "nnlab" not in requirements.read_text(), name
        python = model_env(requirements, tmp_path_factory.getbasetemp())
        by_env.setdefault(python, []).append(name)
    assert len(by_env) == 3, by_env
    np.save(tmp_path / "images.npy", images)
    (tmp_path / "loader.py").write_text(LOADER)
    for python, names in by_env.items():
        done = subprocess.run([str(python), "loader.py", "images.npy", "answers.npz",
                               *(uris[name] for name in names)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600,
                              env={**user_env(), "MLFLOW_TRACKING_URI": store})
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert not report["nnlab"] and "numba" not in report["imported"], (names, report)
        with np.load(tmp_path / "answers.npz") as answers:
            for index, name in enumerate(names):
                np.testing.assert_allclose(answers[f"arr_{index}"], expected[name], atol=1e-6,
                                           rtol=0, err_msg=name)
        if any(name == "numpy_cnn" for name in names):
            numpy_env = python

    # `mlflow models serve` from the model's own environment (its bin/ first on PATH: MLflow
    # starts the `uvicorn` it finds there) answers pixel arrays.
    port = free_port()
    model_path = f"{numpy_env.parent}{os.pathsep}{user_env()['PATH']}"
    with serving(["mlflow", "models", "serve", "-m", uris["numpy_cnn"], "--env-manager",
                  "local", "--host", "127.0.0.1", "--port", str(port)], tmp_path, port,
                 tmp_path / "mlflow-serve.log",
                 {**user_env(), "MLFLOW_TRACKING_URI": store, "PATH": model_path}):
        server = listening(port)
        assert server.cmdline()[0] == str(numpy_env), server.cmdline()
        answered = np.array(_post(port, {"inputs": images[:16].tolist()})["predictions"])
    np.testing.assert_allclose(answered, expected["numpy_cnn"][:16], atol=1e-6, rtol=0)

    # `nnlab serve` on the promoted cnn, natively and as ONNX: MLflow's own Keras pyfunc's
    # probabilities.
    mlflows = np.asarray(mlflow.pyfunc.load_model(uris["cnn"]).predict(images[:64]))
    env = {**user_env(), "MLFLOW_TRACKING_URI": store}
    for served in (uris["cnn"], uris["cnn as onnx"]):
        port = free_port()
        with serving(["nnlab", "serve", "--model", served, "--port", str(port)], project,
                     port, tmp_path / "serve.log", env):
            np.testing.assert_allclose(_nnlab_answers(port, images[:64]), mlflows, atol=1e-5,
                                       err_msg=served)
