"""How fast `nnlab serve` answers (issues 31, 43): MLflow's scoring server on models the
pipeline trained, started as a real process on a free loopback port, with real PNG files (the
validation images) sent base64 in JSON over HTTP.

For each model:
- latency: one image per request, sequential requests (median and 95th percentile);
- throughput: batches of 32 images per request, sequential requests (images per second);
- load: `--clients` concurrent clients sending single-image requests (median, p99,
  requests per second, errors);
- a hostile body: 60 MB (`--hostile-mb`) posted at once: the answer, how long it took, the
  server's RSS before and after, and whether it still answers;
- a pixel body just under the byte limit (16 MiB) that holds far more images than
  --max-images: the answer and how long it took.
`--workers 1 2` measures each model served by 1, then 2 server processes.
`--onnx` also exports each model (`nnlab export`, logged to its run) and measures the ONNX
version served in onnxruntime. The last lines give the ratios between the models.

The models are the workspace's (models/<model>/train_info.json's logged model, in the local
store): run `dvc repro` first.

    python benchmarks/serving.py [--models numpy_dnn cnn] [--requests 100] [--batches 30]
                                 [--clients 16] [--per-client 25] [--onnx]
                                 [--workers 1 2]
                                 [--project DIR] [--quick]

`--project` serves another trained project's models (default: this one); `--quick` (run by
`make test`) sends a few requests of each kind to numpy_dnn: it checks that the script runs.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnlab.server.process import http_status  # noqa: E402
from nnlab.server.settings import free_port  # noqa: E402


def _png(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _post(url: str, images: list[str]) -> float:
    body = json.dumps({"inputs": images}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type":
                                                               "application/json"})
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    took = time.perf_counter() - began
    assert len(answer["predictions"]) == len(images)
    return took


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hostile_body(port: int, megabytes: float) -> tuple[int, float]:
    """POST a body of `megabytes` of one base64 string, as a client that sends all of it
    before reading (stopping if the server closes first); (status, seconds to the answer)."""
    prefix, suffix = b'{"inputs": ["', b'"]}'
    size = int(megabytes * 1e6)
    filler = b"A" * (1 << 20)
    began = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as connection:
        connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\n"
                           + f"Content-Length: {size}\r\n\r\n".encode() + prefix)
        sent = len(prefix)
        try:
            while sent < size - len(suffix):
                part = filler[:min(len(filler), size - len(suffix) - sent)]
                connection.sendall(part)
                sent += len(part)
            connection.sendall(suffix)
        except OSError:  # the server answered and closed: read what it said
            pass
        answer = connection.recv(4096)
    took = time.perf_counter() - began
    return int(answer.split(b" ", 2)[1]), took


def _client(port: int, bodies: list[str], start: threading.Event | None = None
            ) -> tuple[list[float], list[str]]:
    """One client: its own keep-alive connection (as a load generator or a service's HTTP
    client would), requests one after the other; (seconds per answer, errors)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times, errors = [], []
    for body in bodies:
        try:
            began = time.perf_counter()
            connection.request("POST", "/invocations", body,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            took = time.perf_counter() - began
            assert response.status == 200 and len(answer["predictions"]) == 1, answer
            times.append(took)
        except (OSError, AssertionError, ValueError, http.client.HTTPException) as error:
            errors.append(str(error))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.close()
    return times, errors


def concurrent(port: int, encoded: list[str], clients: int, per_client: int
               ) -> dict[str, float]:
    """`clients` client processes at once (processes: threads of one Python client would
    wait for each other's GIL, and that wait would count as the server's latency), each
    sending `per_client` single-image requests."""
    bodies = [[json.dumps({"inputs": [encoded[(index * per_client + request) % len(encoded)]]})
               for request in range(per_client)] for index in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        began = time.perf_counter()
        answers = pool.starmap(_client, [(port, part) for part in bodies])
        wall = time.perf_counter() - began
    times = [took for part, _ in answers for took in part]
    errors = [error for _, part in answers for error in part]
    ms = sorted(1000 * t for t in times) or [float("nan")]
    return {"median": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
            "rate": len(times) / wall, "errors": len(errors)}


def over_images(port: int, shape: tuple[int, ...], megabytes: float) -> tuple[int, float]:
    """A JSON body of `megabytes` of pixels, far more images than --max-images (256):
    (status, seconds to the answer)."""
    one = json.dumps(np.zeros(shape, int).tolist())
    count = int(megabytes * 2**20) // (len(one) + 2)
    body = ('{"inputs": [' + ", ".join([one] * count) + "]}").encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.perf_counter() - began


def measure(uri: str, project: Path, encoded: list[str], args: argparse.Namespace,
            workers: int = 1) -> dict[str, float]:
    """Serve `uri` from `workers` processes, measure it, stop it."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    result: dict[str, float] = {}
    with tempfile.TemporaryFile("w+") as log:
        began = time.perf_counter()
        server = subprocess.Popen(["nnlab", "serve", "--model", uri, "--port", str(port),
                                   "--workers", str(workers)],
                                  cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            while http_status(f"http://127.0.0.1:{port}/health") != 200:
                if server.poll() is not None:
                    log.seek(0)
                    raise SystemExit(log.read())
                time.sleep(0.1)
            result["start_up"] = time.perf_counter() - began
            url = f"http://127.0.0.1:{port}/invocations"
            for _ in range(5):  # warm-up
                _post(url, encoded[:1])
            single = sorted(1000 * _post(url, [encoded[i % len(encoded)]])
                            for i in range(args.requests))
            result["median"] = statistics.median(single)
            result["p95"] = single[int(0.95 * len(single))]
            result["batch"] = 1000 * statistics.median(
                [_post(url, encoded[:32]) for _ in range(args.batches)])
            load = concurrent(port, encoded, args.clients, args.per_client)
            result.update({f"load_{key}": value for key, value in load.items()})
            result["rss_before"] = _rss_mb(server.pid)
            status, took = hostile_body(port, args.hostile_mb)
            result.update(hostile_status=status, hostile_s=took,
                          rss_after=_rss_mb(server.pid))
            result["alive_ms"] = 1000 * _post(url, encoded[:1])
            result["over_status"], result["over_s"] = over_images(
                port, args.shape, min(args.hostile_mb, 15.9))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    return result


def _onnx_uri(model: str, project: Path) -> str:
    """Export the workspace's model (`nnlab export`, logged to its run); the ONNX model's URI."""
    output = subprocess.run(["nnlab", "export", "--model", model, "--output",
                             str(Path(tempfile.mkdtemp()) / f"{model}.onnx")], cwd=project,
                            env={**os.environ, "MLFLOW_TRACKING_URI":
                                 f"sqlite:///{project / 'mlflow.db'}"},
                            capture_output=True, text=True, check=True).stdout
    return output.split(" as ")[-1].split()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["numpy_dnn", "cnn"])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=25)
    parser.add_argument("--hostile-mb", type=float, default=60.0)
    parser.add_argument("--workers", nargs="+", type=int, default=[1],
                        help="server processes: each count is measured (e.g. 1 2)")
    parser.add_argument("--onnx", action="store_true",
                        help="also export each model and serve its ONNX version")
    parser.add_argument("--project", type=Path, default=ROOT, help="a trained project")
    parser.add_argument("--quick", action="store_true",
                        help="numpy_dnn, a few requests of each kind: checks that the script "
                        "runs (make test)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.requests, args.batches = ["numpy_dnn"], 3, 1
        args.clients, args.per_client, args.hostile_mb = 2, 2, 20.0
    project = args.project.resolve()
    images = np.load(project / "data/split/val_images.npy", allow_pickle=False)
    encoded = [_png(image) for image in images[:max(32, args.requests)]]
    args.shape = images.shape[1:]
    results: dict[str, dict[str, float]] = {}
    for model in args.models:
        info = json.loads((project / "models" / model / "train_info.json").read_text())
        for workers in args.workers:
            name = model if workers == 1 else f"{model} ({workers} workers)"
            results[name] = measure(info["mlflow_model_uri"], project, encoded, args, workers)
        if args.onnx:
            results[f"{model} (onnx)"] = measure(_onnx_uri(model, project), project, encoded,
                                                 args)
    print(f"nnlab serve on {project} ({images.shape[1:]} images), "
          f"{args.clients} clients x {args.per_client} requests, a {args.hostile_mb:g} MB body")
    for name, r in results.items():
        print(f"{name}: start-up {r['start_up']:.1f} s; 1 image: median {r['median']:.1f} ms, "
              f"p95 {r['p95']:.1f} ms, {1000 / r['median']:.0f} requests/s; 32 images per "
              f"request: {r['batch']:.1f} ms, {32000 / r['batch']:.0f} images/s")
        print(f"  {args.clients} clients: median {r['load_median']:.1f} ms, p99 "
              f"{r['load_p99']:.1f} ms, {r['load_rate']:.0f} requests/s, "
              f"{r['load_errors']:.0f} errors")
        print(f"  {args.hostile_mb:g} MB body: {r['hostile_status']:.0f} after "
              f"{r['hostile_s']:.2f} s, RSS {r['rss_before']:.0f} -> {r['rss_after']:.0f} MB, "
              f"then a request answered in {r['alive_ms']:.1f} ms")
        print(f"  a {min(args.hostile_mb, 15.9):g} MiB pixel body over --max-images: "
              f"{r['over_status']:.0f} after {r['over_s']:.2f} s")
    for name, r in results.items():
        print(f"{name}: 32 images per request, images/s / at 1: "
              f"{32 * r['median'] / r['batch']:.1f}x; {args.clients} clients' median / one "
              f"client's: {r['load_median'] / r['median']:.1f}x, p99 / p50: "
              f"{r['load_p99'] / r['load_median']:.1f}x")
    first = next(iter(results))
    for name, r in results.items():
        if name != first:
            base = results[first]
            print(f"{name} / {first}: median latency {r['median'] / base['median']:.2f}x, "
                  f"requests/s at {args.clients} clients "
                  f"{r['load_rate'] / base['load_rate']:.2f}x")


if __name__ == "__main__":
    main()
