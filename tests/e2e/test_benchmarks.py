"""Every script in benchmarks/ runs, in its tiny mode: an API change that breaks one fails
the suite, so each figure in benchmarks/README.md stays reproducible by its own command.

The figures of a tiny run mean nothing; only that the script ran to its end and printed its
table. The scripts that need a trained project (serving, the paired test) use the shared
baseline.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.e2e import ROOT, user_env

pytestmark = pytest.mark.slow

# script -> (arguments of its tiny run, a line it prints at its end)
TINY: dict[str, tuple[list[str], str]] = {
    "conv_routes.py": (["--quick"], "direct / Conv2D:"),
    "datasets.py": (["--quick"], "peak RSS of stages.split:"),
    "image_folder_dep.py": (["--quick"], "dvc status split"),
    "long_runs.py": (["--quick"], "checkpoint cost:"),
    "numpy_cnn_speed.py": (["--quick"], "where a step's time goes:"),
    "numpy_step_profile.py": (["--quick"], "everything but Dense layers"),
    "numpy_vs_keras.py": (["--quick"], "3. against Keras"),
    "paired_test.py": (["{project}"], "McNemar's exact test"),
    "quality.py": (["--quick"], "targets: numpy_dnn > SVC"),
    "rerun_scope.py": (["nnlab/evaluation/plots.py"], "nnlab/evaluation/plots.py: 6 stages"),
    "scale.py": (["--quick"], "prepare of the photo folder, one core / every core"),
    "serving.py": (["--quick", "--project", "{project}"], "32 images per request"),
    "sweep.py": (["--quick"], "pruned trials trained"),
    "team_stack.py": (["--quick"], "dvc push:"),
}


def test_every_benchmark_script_has_a_tiny_run() -> None:
    scripts = {path.name for path in (ROOT / "benchmarks").glob("*.py")}
    assert scripts == set(TINY), f"give each script a tiny run here: {scripts ^ set(TINY)}"


@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_runs_in_its_tiny_mode(script: str, request: pytest.FixtureRequest,
                                         tmp_path: Path) -> None:
    arguments, last = TINY[script]
    if any("{project}" in argument for argument in arguments):
        project = request.getfixturevalue("baseline")
        arguments = [argument.format(project=project) for argument in arguments]
    log = tmp_path / "output.log"
    with open(log, "w") as output:  # a file, not a pipe: servers' children inherit it
        code = subprocess.run([sys.executable, f"benchmarks/{script}", *arguments], cwd=ROOT,
                              env=user_env(), stdout=output, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=600).returncode
    text = log.read_text(errors="replace")
    assert code == 0 and "Traceback" not in text, f"{script}:\n{text[-4000:]}"
    assert last in text, f"{script} did not reach its end:\n{text[-4000:]}"
