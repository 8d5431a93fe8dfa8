"""What a logged model costs outside nnlab (issue 62): for each model the workspace trained,
the size of its logged MLflow folder, and the wall time of a fresh process that loads it with
`mlflow.pyfunc.load_model` and predicts one image, in a fresh virtualenv made from the model's
own requirements.txt (nothing of nnlab in it), against `nnlab predict` on the same image in
nnlab's environment.

The models are the workspace's (models/<model>/train_info.json's logged model, in the local
store): run `dvc repro` first. The environments are built by uv from its cache (the package
registry for what it lacks), once per distinct requirements, under --envs.

    python benchmarks/portable_models.py [--models numpy_dnn cnn] [--repeats 3]
                                         [--project DIR] [--envs DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnlab.core.catalog import MODEL_NAMES  # noqa: E402
from tests.support.model_env import model_env  # noqa: E402

LOAD_AND_PREDICT = """
import sys, mlflow, numpy as np
model = mlflow.pyfunc.load_model(sys.argv[1])
print(model.predict(np.load(sys.argv[2])).argmax(axis=1))
"""


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def wall(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--envs", type=Path, default=Path(tempfile.gettempdir()) / "nnlab-envs")
    parser.add_argument("--quick", action="store_true",
                        help="numpy_dnn, one run each: checks that the script runs (make test)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.repeats = ["numpy_dnn"], 1
    import mlflow

    project = args.project.resolve()
    store = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    args.envs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="nnlab-portable-"))
    (work / "load.py").write_text(LOAD_AND_PREDICT)
    image = np.load(project / "data/prepared/test_images.npy", allow_pickle=False)[:1]
    np.save(work / "image.npy", image)
    Image.fromarray(image[0, ..., 0] if image.shape[-1] == 1 else image[0]).save(work / "0.png")
    print(f"{'model':<10} {'logged folder':>14} {'fresh venv: load + 1 image':>27} "
          f"{'nnlab predict':>14}  requirements")
    for model in args.models:
        info = json.loads((project / "models" / model / "train_info.json").read_text())
        uri = info["mlflow_model_uri"]
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(work / model)))
        python = model_env(local / "requirements.txt", args.envs)
        wall([str(python), "load.py", uri, "image.npy"], work, env)  # warm the page cache
        fresh = [wall([str(python), "load.py", uri, "image.npy"], work, env)
                 for _ in range(args.repeats)]
        ours = [wall([str(Path(sys.executable).with_name("nnlab")), "predict", "--model", model,
                      str(work / "0.png")], project) for _ in range(args.repeats)]
        requirements = ", ".join(line.split("==")[0] for line in
                                 (local / "requirements.txt").read_text().split())
        print(f"{model:<10} {folder_bytes(local) / 1e3:>11.1f} kB "
              f"{statistics.median(fresh):>25.2f} s {statistics.median(ours):>12.2f} s  "
              f"{requirements}", flush=True)


if __name__ == "__main__":
    main()
