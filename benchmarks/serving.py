"""How fast `nnlab serve` answers (issue 31): MLflow's scoring server on a model the pipeline
trained, started as a real process on a free loopback port, with real PNG files (the
validation images) sent base64 in JSON over HTTP.

- latency: one image per request, sequential requests (median and 95th percentile);
- throughput: batches of 32 images per request, sequential requests (images per second).

The model is the workspace's (models/<model>/train_info.json's logged model, in the local
store): run `dvc repro` first.

    python benchmarks/serving.py [--model numpy_dnn] [--requests 100] [--batches 30]
                                 [--project DIR] [--quick]

`--project` serves another trained project's model (default: this one); `--quick` (run by
`make test`) sends 3 requests and 1 batch: it checks that the script runs.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="numpy_dnn")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--project", type=Path, default=ROOT, help="a trained project")
    parser.add_argument("--quick", action="store_true",
                        help="3 requests, 1 batch: checks that the script runs (make test)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.batches = 3, 1
    project = args.project.resolve()
    info = json.loads((project / "models" / args.model / "train_info.json").read_text())
    uri = info["mlflow_model_uri"]
    images = np.load(project / "data/split/val_images.npy", allow_pickle=False)
    encoded = [_png(image) for image in images[:max(32, args.requests)]]
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    with tempfile.TemporaryFile("w+") as log:
        began = time.perf_counter()
        server = subprocess.Popen(["nnlab", "serve", "--model", uri, "--port", str(port)],
                                  cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            while http_status(f"http://127.0.0.1:{port}/health") != 200:
                if server.poll() is not None:
                    log.seek(0)
                    raise SystemExit(log.read())
                time.sleep(0.1)
            start_up = time.perf_counter() - began
            url = f"http://127.0.0.1:{port}/invocations"
            for _ in range(5):  # warm-up
                _post(url, encoded[:1])
            single = [_post(url, [encoded[i % len(encoded)]]) for i in range(args.requests)]
            batches = [_post(url, encoded[:32]) for _ in range(args.batches)]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    single_ms = sorted(1000 * t for t in single)
    print(f"nnlab serve --model {uri} ({args.model}, {images.shape[1:]} images)")
    print(f"start-up to /health: {start_up:.1f} s")
    print(f"1 image per request, {args.requests} requests: median "
          f"{statistics.median(single_ms):.1f} ms, p95 {single_ms[int(0.95 * len(single_ms))]:.1f}"
          f" ms, {1000 / statistics.median(single_ms):.0f} requests/s")
    per_batch = statistics.median(batches)
    print(f"32 images per request, {args.batches} requests: median {1000 * per_batch:.1f} ms, "
          f"{32 / per_batch:.0f} images/s")


if __name__ == "__main__":
    main()
