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
from pathlib import Path

import pytest
import yaml

from nnlab.core.activations import ACTIVATIONS
from nnlab.models.catalog import MODEL_NAMES, MODELS
from nnlab.params import SECTIONS
from tests.support.helpers import ROOT

STAGES = ["download", "prepare", "split", "train", "evaluate", "baselines", "report"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, modules: set[str], typing_too: bool = False) -> set[str]:
    """The project modules a module imports. `from pkg import sub` counts as importing the
    module pkg.sub when that is a module. `typing_too`: imports under TYPE_CHECKING count."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                and not typing_too):
            children: list[ast.AST] = list(node.orelse)  # the body never runs
        else:
            children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in modules:
                    found.add(full)
                elif node.module in modules:
                    found.add(node.module)
        for child in children:
            visit(child)

    visit(tree)
    return found


def _paths(*folders: str) -> dict[str, Path]:
    return {_module_name(path): path for folder in folders
            for path in (ROOT / folder).rglob("*.py")}


def import_graph(typing_too: bool = False, folders: tuple[str, ...] = ("nnlab",)
                 ) -> dict[str, set[str]]:
    paths = _paths(*folders)
    modules = set(paths)
    return {name: _imports(ast.parse(path.read_text()), modules, typing_too) - {name}
            for name, path in paths.items()}


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
    graph = {"nnlab.a": _imports(ast.parse(source), {"nnlab.a", "nnlab.b"}),
             "nnlab.b": {"nnlab.a"}}
    assert cycles(graph) == [["nnlab.a", "nnlab.b", "nnlab.a"]]
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import nnlab.b\n"
    assert _imports(ast.parse(typing_only), {"nnlab.a", "nnlab.b"}) == set()
    assert _imports(ast.parse(typing_only), {"nnlab.a", "nnlab.b"}, typing_too=True) == {
        "nnlab.b"}


def test_nnlab_has_no_import_circle_type_only_imports_included() -> None:
    graph = import_graph(typing_too=True)
    assert "nnlab.data.params" in graph["nnlab.data.planar"]  # a typing import, really read
    assert cycles(graph) == []


# -- imports point down: stages -> models/data/evaluation -> core -------------------------------
FAMILIES = {entry.code.replace("/", ".") for entry in MODELS.values()}


def _family(module: str) -> str | None:
    """The model family a module belongs to (nnlab.models.keras), or None."""
    return next((family for family in FAMILIES
                 if module == family or module.startswith(family + ".")), None)


def test_imports_point_down() -> None:
    upward = []
    for name, targets in import_graph(typing_too=True).items():
        for target in targets:
            allowed = True
            if name.startswith("nnlab.core."):
                allowed = target.startswith("nnlab.core.")
            elif name.startswith("nnlab.data."):
                allowed = target.startswith(("nnlab.core.", "nnlab.data."))
            elif _family(name):  # a model family: core, the model contract, itself
                allowed = (target.startswith("nnlab.core.") or _family(target) == _family(name)
                           or target in ("nnlab.models.base", "nnlab.models.catalog"))
            if target == "nnlab.params" or target == "nnlab.cli":  # the top: read by stages
                allowed = name.startswith(("nnlab.cli", "nnlab.search."))
            if not allowed:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_nothing_in_nnlab_imports_the_stages() -> None:
    for name, targets in import_graph(folders=("nnlab", "stages")).items():
        if name.startswith("nnlab"):
            assert not [target for target in targets if target.startswith("stages")], name


# -- dvc.yaml: each stage's params and code -----------------------------------------------------
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


def stage_code(stage: str, model: str | None = None) -> set[str]:
    """The files `python -m stages.<stage> [model]` runs: its imports, followed (packages'
    __init__ included), plus the modules it loads by name: its sections' schemas
    (nnlab.params.SECTIONS) and, for train and evaluate, the model's classifier
    (nnlab.models.catalog.MODELS)."""
    graph = import_graph(folders=("nnlab", "stages"))
    paths = _paths("nnlab", "stages")
    todo = [f"stages.{stage}"]
    todo += [SECTIONS[name].split(":")[0] for name in declared_sections(stage, model)]
    if model:
        todo.append(MODELS[model].classifier.split(":")[0])
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += graph[name]
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in paths]
    return {paths[name].relative_to(ROOT).as_posix() for name in seen}


def as_deps(files: set[str]) -> list[str]:
    """Files as dvc.yaml lists them: a folder whose .py files are all included, else files."""
    deps: set[str] = set()
    for file in files:
        folder = Path(file).parent
        while folder.parent != Path(".") and _whole(folder.parent, files):
            folder = folder.parent
        deps.add(folder.as_posix() if _whole(folder, files) and folder.as_posix() not in
                 ("nnlab", "stages", "nnlab/models") else file)
    return sorted(deps)


def _whole(folder: Path, files: set[str]) -> bool:
    return all(path.relative_to(ROOT).as_posix() in files
               for path in (ROOT / folder).rglob("*.py"))


def _declared_code(stage: str) -> list[str]:
    entry = _pipeline()[stage]
    body: dict[str, list[str]] = entry.get("do") or entry  # type: ignore[assignment]
    return sorted(str(dep) for dep in body["deps"] if str(dep).startswith(("nnlab", "stages"))
                  or str(dep) == "${item.code}")


@pytest.mark.parametrize("stage", ["download", "prepare", "split", "baselines", "report"])
def test_each_stage_depends_on_exactly_the_code_it_runs(stage: str) -> None:
    expected = as_deps(stage_code(stage))
    assert _declared_code(stage) == expected, (
        f"dvc.yaml's code deps of {stage} should be exactly: {expected}")


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_each_model_stage_depends_on_shared_code_plus_its_own_family_folder(stage: str) -> None:
    foreach = _pipeline()[stage]["foreach"]
    assert isinstance(foreach, dict) and list(foreach) == list(MODEL_NAMES)
    shared: set[str] | None = None
    for model, item in foreach.items():
        folder = MODELS[model].code
        assert item == {"code": folder}, f"dvc.yaml {stage}@{model}: code should be {folder}"
        files = stage_code(stage, model)
        own = {file for file in files if file.startswith(folder + "/")}
        assert as_deps(own) == [folder], f"{stage}@{model} runs part of {folder} only: {own}"
        others = {file for file in files - own if file.startswith("nnlab/models/")
                  and file.count("/") > 2}
        assert not others, f"{stage}@{model} runs another model family's code: {others}"
        assert shared is None or shared == files - own, f"{stage}@{model}'s shared code differs"
        shared = files - own
    assert shared is not None
    expected = sorted([*as_deps(shared), "${item.code}"])
    assert _declared_code(stage) == expected, (
        f"dvc.yaml's code deps of {stage} should be exactly: {expected}")


def test_the_numpy_models_and_logreg_never_run_keras_code() -> None:
    for model in ("numpy_dnn", "logreg"):
        for stage in ("train", "evaluate"):
            assert not [file for file in stage_code(stage, model) if "keras" in file]


def test_data_stages_do_not_run_model_or_evaluation_code() -> None:
    for stage in ("download", "prepare", "split"):
        assert not [file for file in stage_code(stage)
                    if file.startswith(("nnlab/models/", "nnlab/evaluation/"))
                    and file not in ("nnlab/models/__init__.py", "nnlab/models/catalog.py")]
    assert "nnlab/evaluation/plots.py" not in stage_code("train", "cnn")
    assert "nnlab/evaluation/plots.py" in stage_code("report")


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
        assert sorted(asked.pop()) == sorted(declared_sections(stage, model)), (stage, model)


# -- one source per name list ---------------------------------------------------------------------
def test_model_names_agree_in_params_yaml_dvc_yaml_and_the_registry() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert tuple(params["models"]) == MODEL_NAMES
    assert set(SECTIONS) - {"data", "baselines"} == set(MODEL_NAMES)
    # Top-level metrics and plots, and the report's deps, cannot use foreach: one per model.
    listed = {path.split("/")[1] for path in pipeline["metrics"]}
    report = {path.split("/")[1] for path in pipeline["stages"]["report"]["deps"]
              if path.startswith(("reports/", "models/")) and path != "reports/baselines.json"}
    assert listed == report == set(MODEL_NAMES)


def test_keras_and_numpy_share_activation_names() -> None:
    from nnlab.models.keras import spec
    from nnlab.models.numpy.layers import ACTIVATIONS as NUMPY_ACTIVATIONS

    assert tuple(NUMPY_ACTIVATIONS) == tuple(spec.ACTIVATIONS) == ACTIVATIONS


def test_each_class_name_means_one_thing() -> None:
    defined: dict[str, list[str]] = {}
    for name, path in _paths("nnlab").items():
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
TOP_LEVEL = {"__init__.py", "cli.py", "params.py"}


def test_nothing_is_loose_at_the_top_of_nnlab() -> None:
    loose = {path.name for path in (ROOT / "nnlab").glob("*.py")} - TOP_LEVEL
    assert not loose, f"modules at nnlab/'s top level belong in a package named for their job: " \
        f"{sorted(loose)}"


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_model_stages_run_nothing_of_the_sweep_or_the_team_stack(stage: str) -> None:
    for model in MODEL_NAMES:
        ran = [file for file in stage_code(stage, model)
               if file.startswith(("nnlab/search/", "nnlab/server/"))]
        assert not ran, f"{stage}@{model} runs {ran}: a sweep hands its trial in through " \
            "NNLAB_TRIAL (nnlab/training/trial.py); the server check is nnlab/tracking/"


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
