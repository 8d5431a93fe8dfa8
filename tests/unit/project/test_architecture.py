"""The shape of the code: imports point one way, every name list has one source, and each
dvc.yaml stage depends on exactly the code it runs.

The import graph is read from the source (ast, nothing executed), late imports inside
functions included. Imports under `if TYPE_CHECKING:` never run: they are left out of what a
stage runs, and kept in the search for import circles. tests/e2e/test_rerun_scope.py checks
the same rules against real processes and real `dvc status`.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nnlab.core.activations import ACTIVATIONS
from nnlab.core.catalog import MODEL_NAMES, MODELS
from nnlab.core.layout import Layout
from nnlab.params import SECTIONS
from nnlab.training import stage_code
from tests.support.helpers import ROOT
from tools import deps

STAGES = list(stage_code.STAGE_SECTIONS)


def import_graph(typing_too: bool = False, folders: tuple[str, ...] = ("nnlab",)
                 ) -> dict[str, set[str]]:
    return stage_code.import_graph(ROOT, folders, typing_too)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first search, as the cycle it closes."""
    state: dict[str, int] = {}
    path: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_late_import_circle_and_a_typing_one() -> None:
    source = "def f():\n    from nnlab.b import x\n"
    graph = {"nnlab.a": stage_code.imports(ast.parse(source), {"nnlab.a", "nnlab.b"}),
             "nnlab.b": {"nnlab.a"}}
    assert cycles(graph) == [["nnlab.a", "nnlab.b", "nnlab.a"]]
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import nnlab.b\n"
    assert stage_code.imports(ast.parse(typing_only), {"nnlab.a", "nnlab.b"}) == set()
    assert stage_code.imports(ast.parse(typing_only), {"nnlab.a", "nnlab.b"},
                              typing_too=True) == {
        "nnlab.b"}


def test_nnlab_has_no_import_circle_type_only_imports_included() -> None:
    graph = import_graph(typing_too=True)
    assert "nnlab.data.section" in graph["nnlab.data.planar"]  # a typing import, really read
    assert cycles(graph) == []


# -- imports point down: stages -> models/data/evaluation -> core -------------------------------
FAMILIES = {entry.code.replace("/", ".") for entry in MODELS.values()}


def _family(module: str) -> str | None:
    """The model family a module belongs to (nnlab.models.keras), or None."""
    return next((family for family in FAMILIES
                 if module == family or module.startswith(family + ".")), None)


# What a model family may import besides core, arrays and itself: the contract every family
# follows, the names, the loss and divergence rule, the console's epoch lines.
MODEL_CONTRACT = ("nnlab.models.base", "nnlab.core.catalog", "nnlab.models.divergence",
                  "nnlab.models.progress")


def test_imports_point_down() -> None:
    upward = []
    for name, targets in import_graph(typing_too=True).items():
        for target in targets:
            allowed = True
            if name.startswith("nnlab.core."):
                allowed = target.startswith("nnlab.core.")
            elif name.startswith("nnlab.arrays."):
                allowed = target.startswith(("nnlab.core.", "nnlab.arrays."))
            elif name.startswith("nnlab.data."):
                allowed = target.startswith(("nnlab.core.", "nnlab.arrays.", "nnlab.data."))
            elif _family(name):  # a model family: core, the model contract, itself
                allowed = (target.startswith(("nnlab.core.", "nnlab.arrays."))
                           or _family(target) == _family(name) or target in MODEL_CONTRACT)
            if target == "nnlab.params":  # the top: read by stages, the commands, the sweep
                allowed = name.startswith(("nnlab.cli.", "nnlab.search."))
            if target.startswith("nnlab.cli"):  # nothing imports the command line
                allowed = name.startswith("nnlab.cli")
            if not allowed:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_nothing_in_nnlab_imports_the_stages() -> None:
    for name, targets in import_graph(folders=("nnlab", "stages")).items():
        if name.startswith("nnlab"):
            assert not [target for target in targets if target.startswith("stages")], name


# -- dvc.yaml: each stage's code, data and outputs ------------------------------------------------
def _pipeline() -> dict[str, dict[str, object]]:
    stages: dict[str, dict[str, object]] = yaml.safe_load(
        (ROOT / "dvc.yaml").read_text())["stages"]
    return stages


def declared_sections(stage: str, model: str | None = None) -> list[str]:
    """The params sections a stage's dvc.yaml entry declares (`data.dataset` -> data)."""
    entry = _pipeline()[stage]
    body: dict[str, list[str]] = entry.get("do") or entry  # type: ignore[assignment]
    names = [str(key).replace("${key}", model or "?").split(".")[0]
             for key in body.get("params", [])]
    return [name for name in dict.fromkeys(names) if name not in ("seed", "models")]


def stage_files(stage: str, model: str | None = None) -> set[str]:
    return stage_code.stage_files(stage, model, ROOT)


def test_dvc_yaml_lists_exactly_the_code_each_stage_runs() -> None:
    """What `make deps` writes is what dvc.yaml holds: `make test` fails on a stale list."""
    text = (ROOT / "dvc.yaml").read_text()
    assert deps.rewrite(text, ROOT) == text, "dvc.yaml's code deps are out of date: `make deps`"
    assert "- nnlab/core/" not in text, "the core is listed as one folder, never file by file"


def test_make_deps_rewrites_a_stale_list_and_keeps_the_rest(tmp_path: Path) -> None:
    text = (ROOT / "dvc.yaml").read_text()
    stale = text.replace("      - stages/download.py\n", "").replace(
        "      - nnlab/data/split.py\n", "      - nnlab/data/split.py\n      - nnlab/gone.py\n")
    assert stale != text and deps.rewrite(stale, ROOT) == text
    assert subprocess.run([sys.executable, str(ROOT / "tools/deps.py"), "--check"],
                          capture_output=True, text=True).returncode == 0


def test_each_model_stage_runs_shared_code_plus_its_whole_family_folder() -> None:
    for stage in stage_code.MODEL_STAGES:
        deps_of = stage_code.code_deps(stage, ROOT)
        assert deps_of[-1] == "${item.code}"
        for model, entry in MODELS.items():
            files = stage_files(stage, model)
            others = {file for file in files if file.startswith("nnlab/models/")
                      and file.count("/") > 2 and not file.startswith(entry.code + "/")}
            assert not others, f"{stage}@{model} runs another model family's code: {others}"


def test_dvc_yaml_reads_and_writes_the_paths_layout_declares() -> None:
    """DVC's own view of every stage (foreach expanded) against nnlab/core/layout.py."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    layout = Layout()
    with Repo(str(ROOT)) as repo:
        for stage in repo.index.stages:
            name, _, model = stage.name.partition("@")
            data = sorted(dep.def_path for dep in stage.deps if not isinstance(
                dep, ParamsDependency) and not dep.def_path.startswith(("nnlab", "stages")))
            assert data == sorted(path.as_posix() for path in
                                  layout.inputs(name, model or None)), stage.name
            outs = sorted(out.def_path for out in stage.outs)
            written = [path.as_posix() for path in layout.outputs(name, model or None)
                       if not path.name.endswith(".partial")]
            assert outs == sorted(written or ["data/raw"]), stage.name


def test_the_numpy_models_and_logreg_never_run_keras_code() -> None:
    for model in ("numpy_dnn", "logreg"):
        for stage in ("train", "evaluate"):
            assert not [file for file in stage_files(stage, model) if "keras" in file]


def test_data_stages_do_not_run_model_or_evaluation_code() -> None:
    for stage in ("download", "prepare", "split"):
        assert not [file for file in stage_files(stage)
                    if file.startswith(("nnlab/models/", "nnlab/evaluation/"))
                    and file not in ("nnlab/models/__init__.py", "nnlab/core/catalog.py")]
    assert "nnlab/evaluation/plots.py" not in stage_files("train", "cnn")
    assert "nnlab/evaluation/plots.py" in stage_files("report")


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_validates_exactly_the_sections_dvc_yaml_declares(
        stage: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import stages._common as common

    monkeypatch.chdir(tmp_path)  # a stopped stage removes its outputs: not the repo's
    asked: list[list[str]] = []

    class Stop(Exception):
        pass

    def load_params(sections: list[str]) -> None:
        asked.append(list(sections))
        raise Stop

    monkeypatch.setattr(common, "load_params", load_params)
    monkeypatch.setattr(common, "USER_ERRORS", ())
    module = __import__(f"stages.{stage}", fromlist=["main"])
    for model in MODEL_NAMES if stage in ("train", "evaluate") else [None]:
        with pytest.raises(Stop):
            module.main([model] if model else [])
        asked_for = sorted(asked.pop())
        assert asked_for == sorted(declared_sections(stage, model)), (stage, model)
        assert asked_for == sorted(stage_code.sections(stage, model)), (stage, model)


# -- one source per name list ---------------------------------------------------------------------
def test_model_names_agree_in_params_yaml_dvc_yaml_and_the_registry() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert tuple(params["models"]) == MODEL_NAMES
    assert set(SECTIONS) - {"data", "baselines"} == set(MODEL_NAMES)
    families = pipeline["vars"][0]["families"]  # train's and evaluate's foreach
    assert families == {name: {"code": entry.code} for name, entry in MODELS.items()}
    # The cross-model plots cannot use foreach: one line per model.
    plotted = {path.split("/")[1] for plot in pipeline["plots"] if isinstance(plot, dict)
               for spec in plot.values() for path in spec["y"] if "history" in path}
    assert plotted == set(MODEL_NAMES)


def test_keras_and_numpy_share_activation_names() -> None:
    from nnlab.models.keras import spec
    from nnlab.models.numpy.layers import ACTIVATIONS as NUMPY_ACTIVATIONS

    assert tuple(NUMPY_ACTIVATIONS) == tuple(spec.ACTIVATIONS) == ACTIVATIONS


def test_each_class_name_means_one_thing() -> None:
    defined: dict[str, list[str]] = {}
    for name, path in stage_code.sources(ROOT, ("nnlab",)).items():
        for node in ast.parse(path.read_text()).body:
            targets = [node.name] if isinstance(node, ast.ClassDef) else (
                [target.id for target in node.targets if isinstance(target, ast.Name)
                 and target.id[:1].isupper() and not target.id.isupper()]
                if isinstance(node, ast.Assign) else [])
            for target in targets:
                defined.setdefault(target, []).append(name)
    assert {key: value for key, value in defined.items() if len(value) > 1} == {}


def test_mlflow_pins_whichever_tensorflow_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from nnlab.models import logged_model  # late: it imports MLflow

    real = importlib.metadata.version
    # The CPU lock installs tensorflow-cpu on Linux x86_64; Macs, ARM and ACCEL=cuda install
    # tensorflow. The model's requirements name the one that is there.
    try:
        installed = f"tensorflow-cpu=={real('tensorflow-cpu')}"
    except importlib.metadata.PackageNotFoundError:
        installed = f"tensorflow=={real('tensorflow')}"
    assert logged_model.pins("tensorflow")[0] == installed

    def plain_tensorflow_only(name: str) -> str:
        if name == "tensorflow-cpu":
            raise importlib.metadata.PackageNotFoundError(name)
        return "2.21.0" if name == "tensorflow" else real(name)

    monkeypatch.setattr(importlib.metadata, "version", plain_tensorflow_only)
    assert logged_model.pins("tensorflow", "numpy")[0] == "tensorflow==2.21.0"


# -- shape: files a newcomer can read -------------------------------------------------------
MAX_FILE_LINES, MAX_FUNCTION_LINES = 300, 60


def _sources() -> list[Path]:
    return sorted([*(ROOT / "nnlab").rglob("*.py"), *(ROOT / "stages").rglob("*.py")])


def test_every_module_says_what_it_owns_and_stays_small() -> None:
    too_long = {}
    for path in _sources():
        text = path.read_text()
        name = path.relative_to(ROOT).as_posix()
        assert ast.get_docstring(ast.parse(text)), f"{name} has no module docstring"
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_long[name] = len(text.splitlines())
    assert not too_long, f"files over {MAX_FILE_LINES} lines: {too_long}"


def test_no_function_is_longer_than_a_screen() -> None:
    too_long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long[f"{path.relative_to(ROOT).as_posix()}:{node.name}"] = lines
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"


# -- the house: grouped by job, and maps that cannot drift ----------------------------------------
TOP_LEVEL = {"__init__.py", "params.py"}


def test_nothing_is_loose_at_the_top_of_nnlab() -> None:
    loose = {path.name for path in (ROOT / "nnlab").glob("*.py")} - TOP_LEVEL
    assert not loose, f"modules at nnlab/'s top level belong in a package named for their job: " \
        f"{sorted(loose)}"


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_model_stages_run_nothing_of_the_sweep_or_the_team_stack(stage: str) -> None:
    for model in MODEL_NAMES:
        ran = [file for file in stage_files(stage, model)
               if file.startswith(("nnlab/search/", "nnlab/server/"))]
        assert not ran, f"{stage}@{model} runs {ran}: a sweep hands its trial in through " \
            "NNLAB_TRIAL (nnlab/training/sweep_hook.py); the server check is nnlab/tracking/"


def _packages() -> list[Path]:
    return sorted(path.parent for path in (ROOT / "nnlab").rglob("__init__.py"))


def _map_names(folder: Path) -> tuple[set[str], set[str]]:
    """What a package's __init__ docstring maps, and what the folder holds: modules as
    `name.py`, subpackages as `name/`."""
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()), clean=False) or ""
    named = set(re.findall(r"(?m)^[ ]+(\w+\.py|\w+/)\s", doc + "\n"))
    held = {path.name for path in folder.glob("*.py") if path.name != "__init__.py"}
    held |= {f"{path.name}/" for path in folder.iterdir() if (path / "__init__.py").is_file()}
    return named, held


@pytest.mark.parametrize("folder", _packages(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_each_package_map_names_every_module_in_it(folder: Path) -> None:
    named, held = _map_names(folder)
    assert held - named == set(), f"{folder.relative_to(ROOT)}/__init__.py's map misses " \
        f"{sorted(held - named)}"
    assert named - held == set(), f"{folder.relative_to(ROOT)}/__init__.py maps modules that " \
        f"are gone: {sorted(named - held)}"


def test_the_map_check_finds_a_missing_module(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text('"""A package:\n\n    a.py  one\n"""\n')
    for name in ("a.py", "b.py", "sub/__init__.py"):
        (tmp_path / "pkg" / name).write_text('"""x"""\n')
    assert _map_names(tmp_path / "pkg") == ({"a.py"}, {"a.py", "b.py", "sub/"})


def test_the_docs_maps_name_every_package_and_top_level_module() -> None:
    expected = {f"{path.name}/" for path in (ROOT / "nnlab").iterdir()
                if (path / "__init__.py").is_file()} | (TOP_LEVEL - {"__init__.py"})
    for doc in ("README.md", "docs/development.md"):
        text = (ROOT / doc).read_text()
        tree = text[text.index("nnlab/\n"):]
        tree = tree[:tree.index("```")]
        assert {name for name in expected if not re.search(
            rf"(?m)^\s+{re.escape(name)}", tree)} == set(), f"{doc}'s tree"


def test_params_yaml_is_read_in_one_place() -> None:
    """nnlab/params.py reads params.yaml for the stages, `nnlab check`, the sweep and the UI;
    YAML is parsed nowhere else but one sampled `choice(...)` value (search/space.py)."""
    parsing = set()
    for name, path in stage_code.sources(ROOT, ("nnlab", "stages")).items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "yaml" and node.attr in ("safe_load", "load"):
                parsing.add(name)
    assert parsing == {"nnlab.params", "nnlab.search.space"}


def test_the_unit_tests_mirror_nnlab() -> None:
    """tests/unit/<package>/ for every package of nnlab/ (and stages/), each with tests: a
    module's tests are where a newcomer looks for them."""
    packages = {path.parent.name for path in (ROOT / "nnlab").glob("*/__init__.py")}
    folders = {path.name for path in (ROOT / "tests/unit").iterdir()
               if path.is_dir() and list(path.glob("test_*.py"))}
    assert packages | {"stages"} <= folders, sorted(packages | {"stages"} - folders)
    assert folders - packages <= {"stages", "project"}, sorted(folders - packages)


# Files that do the same job in each package they are in: a package's face, a model
# family's classifier and its params section's schema.
SAME_JOB = {"__init__.py", "__main__.py", "classifier.py", "section.py"}


def test_one_name_per_job() -> None:
    """No two modules of nnlab/ share a name unless they do the same job, and nothing outside
    tests/ is named as pytest names a test (`test_*.py`, `*_test.py`). (stages/<stage>.py may
    share its name with the module that does its work: nnlab/training/train.py.)"""
    seen: dict[str, list[str]] = {}
    for path in (ROOT / "nnlab").rglob("*.py"):
        seen.setdefault(path.name, []).append(path.relative_to(ROOT).as_posix())
    shared = {name: paths for name, paths in seen.items()
              if len(paths) > 1 and name not in SAME_JOB}
    assert shared == {}
    lookalikes = [path.relative_to(ROOT).as_posix()
                  for folder in ("nnlab", "stages", "benchmarks", "tools")
                  for path in (ROOT / folder).rglob("*.py")
                  if path.name.startswith("test_") or path.name.endswith("_test.py")]
    assert lookalikes == []
