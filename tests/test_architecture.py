"""The shape of the code: imports point one way, and every name list has one source.

The import graph is read from the source (ast, nothing executed), late imports inside
functions included; imports under `if TYPE_CHECKING:` never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from nnlab import keras_spec, tracking
from nnlab.models.base import MODELS
from nnlab.models.numpy_dnn.layers import ACTIVATIONS
from nnlab.params import MODEL_NAMES, Params

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """The nnlab modules a module imports, anywhere in it but under `if TYPE_CHECKING:`.
    `from pkg import sub` counts as importing the module pkg.sub when that is a module."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
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


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in (ROOT / "nnlab").rglob("*.py")}
    modules = set(paths)
    return {name: _imports(ast.parse(path.read_text()), modules) - {name}
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


def test_the_cycle_finder_finds_a_late_import_circle() -> None:
    source = "def f():\n    from nnlab.b import x\n"
    graph = {"nnlab.a": _imports(ast.parse(source), {"nnlab.a", "nnlab.b"}),
             "nnlab.b": {"nnlab.a"}}
    assert cycles(graph) == [["nnlab.a", "nnlab.b", "nnlab.a"]]
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import nnlab.b\n"
    assert _imports(ast.parse(typing_only), {"nnlab.a", "nnlab.b"}) == set()


def test_nnlab_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "nnlab.data.planar" in graph["nnlab.params"]  # the graph is really read
    assert cycles(graph) == []


def test_nothing_in_nnlab_imports_the_stages() -> None:
    for name, targets in import_graph().items():
        assert not [target for target in targets if target.startswith("stages")], name


def test_model_names_agree_in_dvc_yaml_params_and_the_registry() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert tuple(params["models"]) == MODEL_NAMES == tuple(MODELS) == Params().models
    for stage in ("train", "evaluate"):
        assert pipeline["stages"][stage]["foreach"] == "${models}"
    # Top-level metrics and plots, and the report's deps, cannot use foreach: one per model.
    listed = {path.split("/")[1] for path in pipeline["metrics"]}
    report = {path.split("/")[1] for path in pipeline["stages"]["report"]["deps"]
              if path.startswith(("reports/", "models/")) and path != "reports/baselines.json"}
    assert listed == report == set(MODEL_NAMES)
    with pytest.raises(ValueError, match="list every registered model once"):
        Params(models=("numpy_dnn", "cnn"))


def test_keras_and_numpy_share_activation_names_and_the_schema_takes_them() -> None:
    assert set(keras_spec.ACTIVATIONS) == set(ACTIVATIONS)
    from nnlab.params import ACTIVATIONS as SCHEMA_ACTIVATIONS
    from nnlab.params import KERAS_INITS, KERAS_OPTIMIZERS

    assert set(SCHEMA_ACTIVATIONS) == set(ACTIVATIONS)
    assert KERAS_OPTIMIZERS == tuple(keras_spec.OPTIMIZERS)
    assert KERAS_INITS == tuple(keras_spec.INITIALIZERS)


def test_mlflow_pins_whichever_tensorflow_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as metadata

    real = metadata.version
    assert tracking._pins("tensorflow")[0].startswith("tensorflow-cpu==")

    def plain_tensorflow_only(name: str) -> str:
        if name == "tensorflow-cpu":
            raise metadata.PackageNotFoundError(name)
        return "2.21.0" if name == "tensorflow" else real(name)

    monkeypatch.setattr(metadata, "version", plain_tensorflow_only)
    assert tracking._pins("tensorflow", "numpy")[0] == "tensorflow==2.21.0"


# -- dvc.yaml deps: exactly the code each stage runs ------------------------------------------
def _code_graph() -> tuple[dict[str, set[str]], dict[str, Path]]:
    paths = {_module_name(path): path for folder in ("nnlab", "stages")
             for path in (ROOT / folder).rglob("*.py")}
    modules = set(paths)
    return ({name: _imports(ast.parse(path.read_text()), modules) for name, path in
             paths.items()}, paths)


def stage_code(stage: str) -> set[str]:
    """The files `python -m stages.<stage>` runs: its imports, followed (packages' __init__
    included); for train and evaluate also every registered model's module (loaded by name,
    nnlab.models.base.MODELS), and for train the pyfunc code that MLflow logs with a model."""
    graph, paths = _code_graph()
    todo = [f"stages.{stage}"]
    if stage in ("train", "evaluate"):
        todo += [target.split(":")[0] for target in MODELS.values()]
    if stage == "train":
        todo.append("nnlab.models.pyfunc")
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += graph[name]
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))
                 if ".".join(parts[:i]) in paths]
    return {paths[name].relative_to(ROOT).as_posix() for name in seen}


def as_deps(files: set[str]) -> list[str]:
    """Files as dvc.yaml lists them: a folder whose .py files are all included, else files."""
    deps: set[str] = set()
    for file in files:
        folder = Path(file).parent
        while folder.parent != Path(".") and _whole(folder.parent, files):
            folder = folder.parent
        deps.add(folder.as_posix() if _whole(folder, files) and folder.as_posix() not in
                 ("nnlab", "stages") else file)
    return sorted(deps)


def _whole(folder: Path, files: set[str]) -> bool:
    return all(path.relative_to(ROOT).as_posix() in files
               for path in (ROOT / folder).rglob("*.py"))


def _declared_code(deps: list[str]) -> list[str]:
    return sorted(dep for dep in deps if dep.startswith(("nnlab", "stages")))


@pytest.mark.parametrize("stage", ["download", "prepare", "split", "train", "evaluate",
                                   "baselines", "report"])
def test_each_stage_depends_on_exactly_the_code_it_runs(stage: str) -> None:
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    declared = _declared_code((pipeline.get("do") or pipeline)["deps"])
    expected = as_deps(stage_code(stage))
    assert declared == expected, (f"dvc.yaml's code deps of {stage} should be exactly: "
                                  f"{expected}")


def test_training_does_not_depend_on_plots_or_the_report() -> None:
    assert not {"nnlab/evaluation/plots.py", "nnlab/evaluation.py",
                "nnlab/pipeline/report_step.py"} & stage_code("train")
    assert "nnlab/evaluation/plots.py" in stage_code("report")
    assert "nnlab/pipeline/data_steps.py" in stage_code("split")


# -- shape: files a newcomer can read -------------------------------------------------------
MAX_FILE_LINES, MAX_FUNCTION_LINES = 350, 60


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
