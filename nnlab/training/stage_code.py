"""Which project files each pipeline stage runs, read from the imports (ast: nothing is
executed). One answer for two users: `make deps` writes it into dvc.yaml as each stage's code
deps (tools/deps.py), and the train stage keys its checkpoints on it
(nnlab/training/checkpoints.py), so a checkpoint is never resumed by other code.

A stage runs `stages/<stage>.py`, everything it imports (late imports inside functions
included, packages' `__init__.py` too), and what it loads by name: the schemas of the params
sections it validates (SECTIONS) and, for train and evaluate, the model's classifier (MODELS).
Imports under `if TYPE_CHECKING:` never run and are left out.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from nnlab.core.catalog import MODELS, SECTIONS

SOURCE_FOLDERS = ("nnlab", "stages")
# The checkout whose code runs: where this nnlab/ is (`python -m stages.x` imports the nnlab/
# beside stages/ in the working directory first, a `dvc exp run --temp` copy's included).
CODE_ROOT = Path(__file__).resolve().parents[2]
# The params sections each stage validates (stages/<stage>.py asks for exactly these;
# tests/unit/project/test_architecture.py checks it); "{model}" is the model's own section.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "download": ("data",), "prepare": ("data",), "split": ("data",), "data_report": ("data",),
    "train": ("data", "{model}"), "evaluate": ("data",), "baselines": ("data", "baselines"),
    "report": (),
}
MODEL_STAGES = ("train", "evaluate")
# Folders never listed whole: they hold what other stages run too.
NEVER_WHOLE = ("nnlab", "stages", "nnlab/models")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, modules: set[str] | frozenset[str], typing_too: bool = False
            ) -> set[str]:
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


def sources(root: Path, folders: tuple[str, ...] = SOURCE_FOLDERS) -> dict[str, Path]:
    """Every module under `folders`, by its dotted name."""
    return {module_name(path, root): path for folder in folders
            for path in sorted((root / folder).rglob("*.py"))}


def import_graph(root: Path, folders: tuple[str, ...] = SOURCE_FOLDERS,
                 typing_too: bool = False) -> dict[str, set[str]]:
    """Each module -> the project modules it imports."""
    paths = sources(root, folders)
    modules = frozenset(paths)
    return {name: imports(ast.parse(path.read_text(encoding="utf-8")), modules, typing_too)
            - {name} for name, path in paths.items()}


def sections(stage: str, model: str | None = None) -> tuple[str, ...]:
    """The params sections `stage` (for `model`) validates."""
    return tuple(model if model and name == "{model}" else name
                 for name in STAGE_SECTIONS[stage] if model or name != "{model}")


def stage_files(stage: str, model: str | None = None, root: Path | None = None) -> set[str]:
    """The files `python -m stages.<stage> [model]` runs, as paths relative to `root` (the
    checkout whose code runs, by default)."""
    return set(_stage_files(stage, model, (root or CODE_ROOT).resolve()))


@cache
def _sources(root: Path) -> dict[str, Path]:
    return sources(root)


@cache
def _modules(root: Path) -> frozenset[str]:
    return frozenset(_sources(root))


@cache
def _imports_of(root: Path, name: str) -> frozenset[str]:
    tree = ast.parse(_sources(root)[name].read_text(encoding="utf-8"))
    return frozenset(imports(tree, _modules(root)) - {name})


def _stage_files(stage: str, model: str | None, root: Path) -> frozenset[str]:
    """Follows the imports from the stage's module, reading only the modules it reaches."""
    paths = _sources(root)
    todo = [f"stages.{stage}", *(SECTIONS[name].split(":")[0]
                                 for name in sections(stage, model))]
    if model:
        todo.append(MODELS[model].classifier.split(":")[0])
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += _imports_of(root, name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in paths]
    return frozenset(paths[name].relative_to(root).as_posix() for name in seen)


def as_deps(files: set[str], root: Path | None = None) -> list[str]:
    """Files as dvc.yaml lists them: a folder whose .py files are all among them, else each
    file."""
    root = root or CODE_ROOT
    deps: set[str] = set()
    for file in files:
        folder = Path(file).parent
        while folder.parent != Path(".") and _whole(folder.parent, files, root):
            folder = folder.parent
        deps.add(folder.as_posix() if _whole(folder, files, root) and folder.as_posix() not in
                 NEVER_WHOLE else file)
    return sorted(deps)


def _whole(folder: Path, files: set[str], root: Path) -> bool:
    return all(path.relative_to(root).as_posix() in files
               for path in (root / folder).rglob("*.py"))


def code_deps(stage: str, root: Path | None = None) -> list[str]:
    """A stage's code deps as dvc.yaml lists them. A model stage's: the code every model's
    stage shares, and `${item.code}`, its family's folder (dvc.yaml's foreach item)."""
    if stage not in MODEL_STAGES:
        return as_deps(stage_files(stage, root=root), root)
    shared: set[str] | None = None
    for model, entry in MODELS.items():
        files = stage_files(stage, model, root)
        own = {file for file in files if file.startswith(entry.code + "/")}
        if as_deps(own, root) != [entry.code]:
            raise ValueError(f"{stage}@{model} runs part of {entry.code} only: list its "
                             "family's folder whole, or move the file out of it")
        if shared is not None and shared != files - own:
            raise ValueError(f"{stage}@{model} runs other shared code than {stage}@"
                             f"{next(iter(MODELS))}: {sorted(shared ^ (files - own))}")
        shared = files - own
    return [*as_deps(shared or set(), root), "${item.code}"]
