"""A code change reruns exactly the stages whose process imports the changed file.

The shared baseline's `dvc repro` recorded, for every stage, the project files its
`python -m stages.<stage>` process had imported when it exited (tests/support/import_recorder).
Here every Python file of nnlab/ and stages/ is changed in a copy of the trained project,
and real `dvc status` must report, for each file, exactly those stages as changed: no more (a
fix to numpy_dnn's Adam must not retrain the CNN) and no fewer (DVC must not miss a change).
`dvc status` names each changed dependency of each stage, so one status of the project with
every file changed says what a change to each file alone reruns (a file, or the folder that
holds it, among a stage's changed deps), as a status per file would, in one DVC pass instead
of 90.
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


def _status(project: Path) -> dict[str, set[str]]:
    """Each stage `dvc status` reports with changed dependencies, and those dependencies."""
    with contextlib.chdir(project), Repo(str(project)) as repo:  # stage names as DVC prints them
        status = repo.status()
    return {stage: {path for change in changes if isinstance(change, dict)
                    for path in change.get("changed deps", {})}
            for stage, changes in status.items()
            if any(isinstance(change, dict) and "changed deps" in change for change in changes)}


CHANGE = b"\n# a comment: the code is changed\n"


def _importers(imports: dict[str, dict[str, object]], file: str) -> set[str]:
    """The stages whose process imported `file`."""
    return {stage for stage, record in imports.items()
            if file in record["files"]}  # type: ignore[operator]


def _covers(dep: str, file: str) -> bool:
    """Whether a dependency is the file or a folder above it."""
    return file == dep or file.startswith(f"{dep.rstrip('/')}/")


def _reruns(file: str, status: dict[str, set[str]]) -> set[str]:
    """The stages that a change to `file` reruns, in `status`: those with the file, or a
    folder above it, among their changed deps."""
    return {stage for stage, deps in status.items() if any(_covers(dep, file) for dep in deps)}


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
    assert _status(project) == {}  # the trained copy starts up to date
    files = sorted(path.relative_to(project).as_posix()
                   for folder in ("nnlab", "stages") for path in (project / folder).rglob("*.py"))
    assert len(files) > 60
    originals = {file: (project / file).read_bytes() for file in files}
    try:
        for file, original in originals.items():
            (project / file).write_bytes(original + CHANGE)
        status = _status(project)
    finally:
        for file, original in originals.items():
            (project / file).write_bytes(original)
    wrong = {}
    for file in files:
        changed, expected = _reruns(file, status), _importers(imports, file)
        if changed != expected:
            wrong[file] = {"reran": sorted(changed - expected),
                           "missed": sorted(expected - changed)}
    assert wrong == {}
    # Every changed dependency DVC named is one of the changed files (or holds one).
    assert {dep for deps in status.values() for dep in deps
            if not any(_covers(dep, file) for file in files)} == set()
    assert _status(project) == {}


def test_one_file_changed_alone_reruns_its_importers(baseline: Path, project: Path) -> None:
    """The same, one file at a time, for a file that one model family imports and one that
    every model stage imports."""
    imports = _imports(baseline)
    for file in ("nnlab/models/numpy/optimizers.py", "nnlab/core/files.py"):
        path = project / file
        original = path.read_bytes()
        path.write_bytes(original + CHANGE)
        try:
            changed = set(_status(project))
        finally:
            path.write_bytes(original)
        assert changed == _importers(imports, file), file


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
    """The train stage takes a sweep's trial by name (nnlab/training/sweep_hook.py): no stage's
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
