"""`nnlab serve` with a real scoring server process on a loopback port, on a model of a real
MLflow store's registry: image files (base64 PNG) and uint8 arrays in, class names and
probabilities out, the same as `nnlab predict`; bad requests get 400 and one line; a body
over the limit gets 413 unread, and the server's memory stays where it was; concurrent
clients each get their own images' answers."""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nnlab.handoff import promotion
from nnlab.handoff.prediction import predict_registered
from nnlab.server.settings import free_port
from tests.support.e2e import listening, serving, user_env
from tests.unit.handoff.test_registry import _trained

pytestmark = pytest.mark.slow
MODEL = "models:/tiny-logreg@champion"
LIMITS = ["--max-body-mb", "2", "--max-images", "40", "--max-pixels", "10000"]


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
        promotion.promote(promotion.candidate(_trained(tmp_path, 0.9, name="one")),
                         report=lambda line: None)
    yield from _serve(tmp_path, mlflow_store)


def _serve(tmp_path: Path, mlflow_store: str) -> Iterator[tuple[str, list[Path]]]:
    pixels = np.random.default_rng(5).integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    files = []
    for index, image in enumerate(pixels):
        files.append(tmp_path / f"{index}.png")
        Image.fromarray(image).save(files[-1])
    port = free_port()
    temporary = tmp_path / "tmp"  # the server's TMPDIR: what it leaves there shows
    temporary.mkdir()
    env = {**user_env(), "MLFLOW_TRACKING_URI": mlflow_store, "TMPDIR": str(temporary)}
    log = tmp_path / "serve.log"
    with serving(["nnlab", "serve", "--model", MODEL, "--port", str(port), *LIMITS], tmp_path,
                 port, log, env):
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


def _png(side: int) -> str:
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(("body", "reason"), [
    ({"inputs": [_png(8)] * 41}, "41 image files in one request, over the limit of 40 "
     "images (nnlab serve --max-images)"),
    ({"inputs": np.zeros((41, 8, 8, 1), np.uint8).tolist()}, "over the limit of 40"),
    ({"inputs": [_png(8), _png(101)]}, "image 1: 101x101 pixels, over the limit of 10,000 "
     "pixels per image (nnlab serve --max-pixels)"),
])
def test_too_many_images_or_pixels_get_400_naming_the_limit(served: tuple[str, list[Path]],
                                                           body: Any, reason: str) -> None:
    status, answer = _post(served[0], body)
    assert status == 400 and reason in answer["error"], answer


def _rss_mb(port: int) -> float:
    """The resident memory of the process listening on `port`."""
    return float(listening(port).memory_info().rss) / 2**20


def _send_body(port: int, header: bytes, body: bytes) -> tuple[int, bytes, float]:
    """Send a request as a client that writes its whole body before reading (stopping if
    the server closes first); (status, answer's body, seconds)."""
    began = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        try:
            connection.sendall(header)
            for start in range(0, len(body), 1 << 20):
                connection.sendall(body[start:start + (1 << 20)])
        except OSError:  # the server answered and closed
            pass
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.endswith(b"}"):
                break
    return int(answer.split(b" ", 2)[1]), answer.split(b"\r\n\r\n", 1)[1], \
        time.perf_counter() - began


def test_a_body_over_the_limit_gets_413_unread_and_costs_no_memory(
        served: tuple[str, list[Path]]) -> None:
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    before = _rss_mb(port)
    body = b'{"inputs": ["' + b"A" * 60_000_000 + b'"]}'
    header = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    status, answer, took = _send_body(port, header, body)
    assert status == 413 and b"over the limit of 2,097,152 bytes" in answer, answer
    assert b"--max-body-mb" in answer and took < 5, (answer, took)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in
                       [body[i:i + 500_000] for i in range(0, 3_000_000, 500_000)])
    header = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    status, answer, _ = _send_body(port, header, chunked + b"0\r\n\r\n")
    assert status == 413, answer
    assert _rss_mb(port) - before < 100
    status, _ = _post(url, {"inputs": [_png(8)]})  # and it goes on serving
    assert status == 200


def test_concurrent_clients_each_get_their_own_answers(served: tuple[str, list[Path]]) -> None:
    """16 clients at once, each image with a known answer: batching never mixes requests."""
    url, _ = served
    images = np.random.default_rng(3).integers(0, 256, size=(16, 8, 8, 1), dtype=np.uint8)
    status, alone = _post(url, {"inputs": images.tolist()})
    assert status == 200
    answers: dict[int, list[Any]] = {}

    def client(index: int) -> None:
        answers[index] = [_post(url, {"inputs": images[index:index + 1].tolist()})
                          for _ in range(10)]

    threads = [threading.Thread(target=client, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(16):
        for status, answer in answers[index]:
            assert status == 200, answer
            (prediction,) = answer["predictions"]
            assert prediction["class"] == alone["predictions"][index]["class"]
            for name, probability in prediction["probabilities"].items():
                assert probability == pytest.approx(
                    alone["predictions"][index]["probabilities"][name], abs=1e-6)


def _bomb_png(width: int, height: int) -> str:
    """A real 1x1 PNG whose header claims width x height: Pillow reads the size, and would
    decode (and allocate) that many pixels."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return base64.b64encode(bytes(data)).decode()


SVG = base64.b64encode(b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>'
                       ).decode()


@pytest.mark.parametrize(("raw", "reason"), [
    (b"[" * 100_000 + b"]" * 100_000, "nested 100,000 levels deep (at most 32)"),
    (b"\xff\xfe\x00secret", "not UTF-8 text"),
    (b"secret, not json", "the body is not JSON (Expecting value at line 1, column 1)"),
    (b"[1, 2]", "not a list"),
    (json.dumps({"inputs": None}).encode(), "image 0: expected a base64-encoded image file, "
     "got null"),
    (json.dumps({"inputs": [SVG]}).encode(), "SVG and PDF are not images"),
    (json.dumps({"inputs": [_bomb_png(30_000, 30_000)]}).encode(),
     "image 0: 30000x30000 pixels, over the limit of 10,000 pixels per image"),
])
def test_a_malformed_request_gets_400_naming_its_cause_and_never_echoed(
        served: tuple[str, list[Path]], raw: bytes, reason: str) -> None:
    status, answer = _post(served[0], None, raw)
    assert status == 400 and reason in answer["error"], answer
    assert "secret" not in answer["error"] and " at 0x" not in answer["error"], answer


def test_the_server_leaves_no_temporary_folder(served: tuple[str, list[Path]]) -> None:
    assert list((served[1][0].parent / "tmp").iterdir()) == []


def test_a_taken_port_is_one_line_before_anything_loads(served: tuple[str, list[Path]]
                                                      ) -> None:
    import subprocess

    url, files = served
    port = url.rsplit(":", 1)[1]
    for command in (["nnlab", "serve", "--model", MODEL], ["nnlab", "ui"]):
        began = time.perf_counter()
        result = subprocess.run([*command, "--port", port], cwd=files[0].parent,
                                env=user_env(), capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result
        assert result.stderr.strip() == (
            f"{command[0]} {command[1]}: error: port {port} on 127.0.0.1 is taken by another "
            f"process: stop it, or give `{command[0]} {command[1]}` another --port"), result
        assert "Serving" not in result.stdout and time.perf_counter() - began < 30


def test_serving_beyond_loopback_warns_that_there_is_no_authentication() -> None:
    from nnlab.handoff.scoring_server import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert exposure_warning("localhost") is None
    warning = exposure_warning("0.0.0.0")
    assert warning is not None and "no authentication" in warning and "127.0.0.1" in warning


def _raw_post(port: int, body: bytes, content_type: bytes | None) -> tuple[int, Any, float]:
    """POST `body` with `content_type` (None: no Content-Type header at all); (status, the
    JSON answer, seconds)."""
    header = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
    if content_type is not None:
        header += b"Content-Type: " + content_type + b"\r\n"
    status, answer, took = _send_body(port, header + b"\r\n", body)
    return status, json.loads(answer), took


def _quiet_after(server: Any) -> float:
    """CPU seconds the server spends in the second after the next two: its leftover work."""
    time.sleep(2)
    before = sum(server.cpu_times()[:2])
    time.sleep(1)
    return sum(server.cpu_times()[:2]) - before


def _parquet_bomb() -> bytes:
    """The probe's body, at a tenth of its size: one zstd column of 20 strings of 5 MB,
    100 MB decoded, a few hundred bytes sent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"image": pa.array(["A" * 5 * 2**20] * 20, pa.large_string())}),
                   buffer, compression="zstd")
    return buffer.getvalue()


def _csv(rows: int) -> bytes:
    return b"image\n" + (_png(8).encode() + b"\n") * rows


def test_every_body_type_is_bounded_before_it_is_decoded(served: tuple[str, list[Path]]
                                                        ) -> None:
    """A Parquet bomb or a body with no Content-Type gets 415; a JSON or CSV body of more
    images than --max-images (40) gets 400 within a second, whether it holds pixels or files,
    near the byte limit (2 MiB); after each, the server's memory is where it was, its CPU is
    idle, and it answers the next request."""
    url, files = served
    port = int(url.rsplit(":", 1)[1])
    server = listening(port)
    before = server.memory_info().rss / 2**20
    pixels = np.zeros((4_000, 8, 8, 1), np.uint8)
    cases = [
        (_parquet_bomb(), b"application/vnd.apache.parquet", 415,
         "send application/json or text/csv"),
        (json.dumps({"inputs": [_png(8)]}).encode(), None, 415, "no Content-Type"),
        (json.dumps({"inputs": pixels.tolist()}).encode(), b"application/json", 400,
         "4,000 images of (8, 8, 1) in one request, over the limit of 40 images"),
        (json.dumps({"inputs": [_png(8)] * 10_000}).encode(), b"application/json", 400,
         "10,000 image files in one request, over the limit of 40 images"),
        (_csv(10_000), b"text/csv", 400, "10,000 CSV rows (images) in one request"),
    ]
    for body, kind, status, reason in cases:
        assert len(body) < 2 * 2**20, len(body)
        got, answer, took = _raw_post(port, body, kind)
        assert got == status and reason in answer["error"], (kind, answer)
        assert took < 1, (kind, took)
        assert _quiet_after(server) < 0.2, kind
        assert server.memory_info().rss / 2**20 - before < 100, kind
        assert _post(url, {"inputs": [_png(8)]})[0] == 200, kind
    assert _raw_post(port, _csv(3), b"text/csv")[0] == 200  # a CSV of files is a request
    assert "Traceback" not in (files[0].parent / "serve.log").read_text()


def test_the_server_starts_quietly(served: tuple[str, list[Path]]) -> None:
    """Its log holds the line that says where it serves, and nothing a user can't act on:
    no MLflow warning about type hints, no colour escapes."""
    log = (served[1][0].parent / "serve.log").read_text()
    assert log.startswith("Serving models:/tiny-logreg@champion on http://127.0.0.1:"), log
    assert "Warning" not in log and "\x1b[" not in log, log


def test_idle_and_slow_connections_cannot_starve_normal_clients(
        served: tuple[str, list[Path]]) -> None:
    """Against `ulimit -n 256`, 300 sockets that send nothing or half a header: normal
    requests are answered, the idle ones are closed after --client-timeout, the log holds no
    flood, and SIGTERM stops the server within 10 s."""
    import signal

    _, files = served
    folder = files[0].parent
    port = free_port()
    log = folder / "serve-limited.log"
    command = (f"ulimit -n 256 && exec nnlab serve --model {MODEL} --port {port} "
               f"{' '.join(LIMITS)} --client-timeout 2")
    env = {**user_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    with serving(["bash", "-c", command], folder, port, log, env):
        url = f"http://127.0.0.1:{port}"
        server = listening(port)
        idle: list[socket.socket] = []
        try:
            for index in range(300):
                connection = socket.socket()
                connection.settimeout(5)
                connection.connect_ex(("127.0.0.1", port))
                if index % 2:
                    connection.send(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")  # half
                idle.append(connection)
            began = time.monotonic()
            answered = [_post(url, {"inputs": [_png(8)]})[0] for _ in range(10)]
            assert answered == [200] * 10 and time.monotonic() - began < 30
            time.sleep(3)  # past --client-timeout: the server has closed its ends
            assert len(server.net_connections("tcp")) < 50
        finally:
            for connection in idle:
                connection.close()
        assert _post(url, {"inputs": [_png(8)]})[0] == 200
        began = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        assert time.monotonic() - began < 10
    text = log.read_text()
    assert text.count("Too many open files") <= 2 and len(text) < 20_000, text[-3000:]


def test_workers_share_the_port(served: tuple[str, list[Path]]) -> None:
    """`--workers 2`: two server processes, and both answer."""
    import psutil

    _, files = served
    folder = files[0].parent
    port = free_port()
    env = {**user_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    with serving(["nnlab", "serve", "--model", MODEL, "--port", str(port), "--workers", "2"],
                 folder, port, folder / "serve-workers.log", env):
        # One socket, shared: psutil names one of its processes; their parent is uvicorn's.
        parent = listening(port).parent()
        workers = [child for child in parent.children()
                   if "spawn_main" in " ".join(child.cmdline())]
        assert len(workers) == 2, [child.cmdline() for child in parent.children()]
        url = f"http://127.0.0.1:{port}"

        def client() -> None:
            for _ in range(40):
                assert _post(url, {"inputs": [_png(8)]})[0] == 200

        # Bursts until each has held a client's connection (the sockets it accepted are its
        # own): the first answered /health, the other may still be loading the model.
        served_by: set[int] = set()
        deadline = time.monotonic() + 120
        while len(served_by) < 2 and time.monotonic() < deadline:
            threads = [threading.Thread(target=client) for _ in range(8)]
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                served_by |= {worker.pid for worker in workers if any(
                    c.status == "ESTABLISHED" and c.laddr.port == port
                    for c in worker.net_connections("tcp"))}
                time.sleep(0.01)
            for thread in threads:
                thread.join()
        assert served_by == {worker.pid for worker in workers}, served_by
        assert psutil.pid_exists(parent.pid)
