"""One cnn training over 2 processes against 1 process with 2 devices (docs/devices.md,
"Several machines"), on CIFAR-shaped data (32x32x3, 10 classes), on this machine's CPUs.

    python benchmarks/multi_process.py [--images 2048] [--epochs 4] [--batch-size 64]
    python benchmarks/multi_process.py --quick     (a tiny run: the tests run it)

Both runs split each global batch of 64 over 2 CPU devices with Keras's DataParallel on
JAX; they differ only in where the devices live: 2 virtual devices in one process
(XLA_FLAGS=--xla_force_host_platform_device_count=2), or 1 device in each of 2 processes
joined by JAX's distributed runtime (gloo's TCP collectives over loopback). So the
difference of their step times is what crossing processes costs a step: the gradients'
all-reduce over TCP, and the coordination. Samples/s are of the epochs after the first (the
first compiles). On a 2-core machine the two processes share the cores one process had: this
shows the overhead, never a speed-up; across machines each process brings its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.loopback import coordinator_address  # noqa: E402

CHILD = """
    import json, sys, time
    import numpy as np
    from nnlab.models.base import new_model
    from tests.support.helpers import project_params
    process, processes, coordinator, images, epochs, batch = sys.argv[1:7]
    process, processes, images, epochs, batch = map(int, (process, processes, images, epochs,
                                                          batch))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, images).astype(np.int64)
    extra = ({"processes": processes, "coordinator": coordinator, "join_timeout": 120}
             if processes > 1 else {"data_parallel": True})
    params = project_params({"cnn": {"backend": "jax", "device": "cpu", "epochs": epochs,
                                     "batch_size": batch, "early_stopping_patience": None,
                                     **extra}})
    model = new_model("cnn", params.model_params("cnn"), seed=0, process=process)
    ends = []
    rows = model.fit((x, y), (x[:256], y[:256]), 10,
                     on_epoch=lambda row: ends.append(time.perf_counter()))
    print(json.dumps({"ends": ends, "losses": [row["loss"] for row in rows],
                      "device": model.runtime()["device"]}))
    """


def _run(processes: int, args: argparse.Namespace) -> dict[str, object]:
    """Train with `processes` processes (1: one process with 2 virtual devices); process 0's
    epoch end times and losses."""
    devices = 2 if processes == 1 else 1
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    coordinator = coordinator_address()
    children = [subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(index), str(processes), coordinator,
         str(args.images), str(args.epochs), str(args.batch_size)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for index in range(processes)]
    outputs = [child.communicate(timeout=1800) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        if child.returncode:
            raise SystemExit(f"a child failed:\n{err[-3000:]}")
    return dict(json.loads(outputs[0][0].strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="256 images, 3 epochs")
    args = parser.parse_args()
    if args.quick:
        args.images, args.epochs = 256, 3
    steps = args.images // args.batch_size
    print(f"cnn (params.yaml's architecture) on {args.images} random 32x32x3 images, 10 "
          f"classes, batch {args.batch_size} ({steps} steps an epoch), {args.epochs} epochs, "
          f"JAX on {os.cpu_count()} CPU cores; epochs 2-{args.epochs} timed")
    rows, losses = {}, {}
    for processes in (1, 2):
        started = time.perf_counter()
        result = _run(processes, args)
        ends = list(result["ends"])  # type: ignore[call-overload]
        per_epoch = (ends[-1] - ends[0]) / (len(ends) - 1)
        rows[processes] = per_epoch / steps
        losses[processes] = list(result["losses"])  # type: ignore[call-overload]
        print(f"  {result['device']:<24} {args.images / per_epoch:8.0f} samples/s  "
              f"{1000 * per_epoch / steps:7.1f} ms/step  (whole run "
              f"{time.perf_counter() - started:.1f} s; losses "
              f"{', '.join(f'{loss:.5f}' for loss in result['losses'])})")  # type: ignore
    gap = max(abs(one - two) / one for one, two in zip(losses[1], losses[2], strict=True))
    print(f"loss agreement over {args.epochs} epochs: largest relative difference {gap:.2e} "
          f"(the target: 2e-4)")
    print(f"collective cost per step: {1000 * (rows[2] - rows[1]):.1f} ms "
          f"(2 processes x 1 device minus 1 process x 2 devices, {args.batch_size}-image steps)")


if __name__ == "__main__":
    main()
