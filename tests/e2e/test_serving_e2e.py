"""`nnlab serve` with a real scoring server process on a loopback port, on a model of a real
MLflow store's registry: image files (base64 PNG) and uint8 arrays in, class names and
probabilities out, the same as `nnlab predict`; bad requests get 400 and one line."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nnlab.handoff import promote
from nnlab.handoff.predict import predict_registered
from nnlab.server.settings import free_port
from tests.support.e2e import serving, user_env
from tests.unit.tracking.test_registry import _trained

pytestmark = pytest.mark.slow
MODEL = "models:/tiny-logreg@champion"


@pytest.fixture(scope="module")
def served(migrated_store: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, list[Path]]]:
    """A promoted tiny logreg, served by `nnlab serve` (started once for the module); (its
    URL, 3 PNG files)."""
    tmp_path = tmp_path_factory.mktemp("serving")
    shutil.copyfile(migrated_store, tmp_path / "mlflow.db")
    mlflow_store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DVC_ROOT", str(tmp_path))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        promote.promote(promote.candidate(_trained(tmp_path, 0.9, name="one")),
                         report=lambda line: None)
    yield from _serve(tmp_path, mlflow_store)


def _serve(tmp_path: Path, mlflow_store: str) -> Iterator[tuple[str, list[Path]]]:
    pixels = np.random.default_rng(5).integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    files = []
    for index, image in enumerate(pixels):
        files.append(tmp_path / f"{index}.png")
        Image.fromarray(image).save(files[-1])
    port = free_port()
    env = {**user_env(), "MLFLOW_TRACKING_URI": mlflow_store}
    log = tmp_path / "serve.log"
    with serving(["nnlab", "serve", "--model", MODEL, "--port", str(port)], tmp_path, port,
                 log, env):
        yield f"http://127.0.0.1:{port}", files
    assert "Traceback" not in log.read_text()


def _post(url: str, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/invocations", data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_invocations_answer_what_nnlab_predict_answers(served: tuple[str, list[Path]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    url, files = served
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{files[0].parent / 'mlflow.db'}")
    expected, _ = predict_registered(MODEL, files, top=3)
    encoded = [base64.b64encode(path.read_bytes()).decode() for path in files]
    pixels = np.stack([np.asarray(Image.open(path))[:, :, None] for path in files])
    for body in ({"inputs": encoded}, {"inputs": {"image": encoded}},
                 {"dataframe_split": {"columns": ["image"], "data": [[e] for e in encoded]}},
                 {"inputs": pixels.tolist()}):
        status, answer = _post(url, body)
        assert status == 200, answer
        predictions = answer["predictions"]
        assert len(predictions) == 3
        for prediction, wanted in zip(predictions, expected, strict=True):
            assert prediction["class"] == wanted.top[0][0]
            for name, probability in wanted.top:
                assert prediction["probabilities"][name] == pytest.approx(probability, abs=1e-6)


@pytest.mark.parametrize(("body", "raw", "reason"), [
    ({"inputs": ["bm90IGFuIGltYWdl"]}, None, "image 0: not a readable PNG or JPEG file"),
    ({"inputs": ["***"]}, None, "image 0: not base64"),
    ({"inputs": [[[1, 2, 3]]]}, None, "expected images of shape (8, 8, 1)"),
    ({"inputs": np.full((1, 8, 8, 1), 300).tolist()}, None, "from 0 to 255"),
    ({"wrong": [1]}, None, ""),
    (None, b"{not json", ""),
])
def test_a_bad_request_gets_400_and_one_line(served: tuple[str, list[Path]], body: Any,
                                             raw: bytes | None, reason: str) -> None:
    url, _ = served
    status, answer = _post(url, body, raw)
    assert status == 400, answer
    assert set(answer) == {"error"} and "\n" not in answer["error"], answer
    assert "Traceback" not in answer["error"] and reason in answer["error"], answer
