"""A code change reruns exactly the stages whose process imports the changed file.

The shared baseline's `dvc repro` recorded, for every stage, the project files its
`python -m stages.<stage>` process had imported when it exited (tests/support/import_recorder).
Here each Python file of nnlab/ and stages/ is changed in turn in a copy of the trained
project, and real `dvc status` must report exactly those stages as changed: no more (a fix to
numpy_dnn's Adam must not retrain the CNN) and no fewer (DVC must not miss a change).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from dvc.repo import Repo

from tests.support.e2e import MODELS, copy_project

pytestmark = pytest.mark.slow


def _imports(baseline: Path) -> dict[str, dict[str, object]]:
    folder = baseline.parent / "imports"
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def _changed(project: Path) -> set[str]:
    """The stages `dvc status` reports with changed dependencies."""
    with contextlib.chdir(project), Repo(str(project)) as repo:  # stage names as DVC prints them
        status = repo.status()
    return {stage for stage, changes in status.items()
            if any(isinstance(change, dict) and "changed deps" in change for change in changes)}


@pytest.fixture(scope="module")
def project(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(baseline, tmp_path_factory.mktemp("rerun-scope") / "project")


def test_every_stage_recorded_its_imports(baseline: Path) -> None:
    imports = _imports(baseline)
    expected = {"download", "prepare", "split", "data_report", "baselines", "report",
                *(f"{stage}@{model}" for stage in ("train", "evaluate") for model in MODELS)}
    assert set(imports) == expected
    for stage, record in imports.items():
        assert f"stages/{stage.partition('@')[0]}.py" in record["files"], stage


def test_the_numpy_models_and_logreg_never_import_tensorflow_or_keras_code(
        baseline: Path) -> None:
    imports = _imports(baseline)
    for stage in ("train@numpy_dnn", "train@logreg", "evaluate@numpy_dnn", "evaluate@logreg"):
        assert imports[stage]["tensorflow"] is False, stage
        assert not [file for file in imports[stage]["files"]  # type: ignore[union-attr]
                    if file.startswith("nnlab/models/keras/")], stage
    assert imports["train@cnn"]["tensorflow"] is True  # the recorder really sees TensorFlow


def test_a_code_change_reruns_exactly_the_stages_that_import_it(
        baseline: Path, project: Path) -> None:
    imports = _imports(baseline)
    assert _changed(project) == set()  # the trained copy starts up to date
    files = sorted(path.relative_to(project).as_posix()
                   for folder in ("nnlab", "stages") for path in (project / folder).rglob("*.py"))
    assert len(files) > 60
    wrong = {}
    for file in files:
        path = project / file
        original = path.read_bytes()
        path.write_bytes(original + b"\n# a comment: the code is changed\n")
        try:
            changed = _changed(project)
        finally:
            path.write_bytes(original)
        expected = {stage for stage, record in imports.items()
                    if file in record["files"]}  # type: ignore[operator]
        if changed != expected:
            wrong[file] = {"reran": sorted(changed - expected),
                           "missed": sorted(expected - changed)}
    assert wrong == {}
    assert _changed(project) == set()


@pytest.mark.parametrize(("file", "allowed"), [
    ("nnlab/models/numpy/optimizers.py",
     {f"{stage}@{model}" for stage in ("train", "evaluate") for model in ("numpy_dnn",
                                                                          "numpy_cnn")}),
    ("nnlab/models/keras/builders.py",
     {"train@keras_mlp", "evaluate@keras_mlp", "train@cnn", "evaluate@cnn"}),
    ("nnlab/models/logreg/classifier.py", {"train@logreg", "evaluate@logreg"}),
    ("nnlab/data/cifar10.py", {"download", "prepare"}),
    ("nnlab/evaluation/plots.py", {*(f"evaluate@{model}" for model in MODELS), "report"}),
])
def test_the_issue_targets(baseline: Path, file: str, allowed: set[str]) -> None:
    """The stages each kind of change may rerun (issue 28's table), from the recorded imports."""
    imports = _imports(baseline)
    importers = {stage for stage, record in imports.items()
                 if file in record["files"]}  # type: ignore[operator]
    assert importers and importers <= allowed, importers


def test_an_edit_to_the_sweep_or_the_team_stack_reruns_nothing(baseline: Path) -> None:
    """The train stage takes a sweep's trial by name (nnlab/training/trial.py): no stage's
    process imports nnlab/search/ or nnlab/server/, so no edit there retrains a model (the
    loop above checks each of those files against real `dvc status` too)."""
    imports = _imports(baseline)
    files = [path.relative_to(baseline).as_posix()
             for folder in ("nnlab/search", "nnlab/server")
             for path in (baseline / folder).glob("*.py")]
    assert len(files) > 20
    importers = {file: sorted(stage for stage, record in imports.items()
                              if file in record["files"])  # type: ignore[operator]
                 for file in files}
    assert {file: stages for file, stages in importers.items() if stages} == {}
