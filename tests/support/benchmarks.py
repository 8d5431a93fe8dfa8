"""Each script in benchmarks/ and its tiny run (tests/e2e/test_benchmark_*.py run them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.e2e import ROOT, user_env

# script -> (arguments of its tiny run, a line it prints at its end)
TINY: dict[str, tuple[list[str], str]] = {
    "conv_routes.py": (["--quick"], "direct / Conv2D:"),
    "datasets.py": (["--quick"], "peak RSS of stages.split:"),
    "gpu.py": (["--device", "cpu", "--quick"], "gpu.py: done"),
    "image_folder_dep.py": (["--quick"], "dvc status split"),
    "long_runs.py": (["--quick"], "checkpoint cost:"),
    "multi_process.py": (["--quick"], "collective cost per step:"),
    "numpy_cnn_speed.py": (["--quick"], "where a step's time goes:"),
    "numpy_step_profile.py": (["--quick"], "everything but Dense layers"),
    "numpy_vs_keras.py": (["--quick"], "3. against Keras"),
    "portable_models.py": (["--quick", "--project", "{project}"], "mlflow, numpy"),
    "quality.py": (["--quick"], "targets: numpy_dnn > SVC"),
    "rerun_scope.py": (["nnlab/evaluation/plots.py"], "nnlab/evaluation/plots.py: 6 stages"),
    "scale.py": (["--quick"], "prepare of the photo folder, one core / every core"),
    "serving.py": (["--quick", "--project", "{project}"], "32 images per request, images/s"),
    "sweep.py": (["--quick"], "pruned trials trained"),
    "team_stack.py": (["--quick"], "dvc push:"),
}
# The ones that run a whole pipeline, sweep or server stack: a file of their own, so that
# the two pytest workers share the tiny runs (`--dist loadfile`).
PIPELINES = ("quality.py", "sweep.py", "team_stack.py")


def run_tiny(script: str, log: Path, project: Path | None = None) -> None:
    """Run `benchmarks/<script>` in its tiny mode; fail with its output unless it ran to its
    end."""
    arguments = [argument.format(project=project) for argument in TINY[script][0]]
    with open(log, "w") as output:  # a file, not a pipe: servers' children inherit it
        code = subprocess.run([sys.executable, f"benchmarks/{script}", *arguments], cwd=ROOT,
                              env=user_env(), stdout=output, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=600).returncode
    text = log.read_text(errors="replace")
    assert code == 0 and "Traceback" not in text, f"{script}:\n{text[-4000:]}"
    assert TINY[script][1] in text, f"{script} did not reach its end:\n{text[-4000:]}"
