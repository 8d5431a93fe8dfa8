"""The DVC side of a trial: `dvc exp run --temp` with the trial's params, its metrics read back
from the experiment's git ref, the temporary workspaces of killed trials removed, and
`dvc exp apply` for the best one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnlab.search.space import yaml_scalar

TEMP_ROOT = Path(".dvc/tmp/exps/standalone")  # where `--temp` workspaces live
INFO_DIRS = (Path(".dvc/tmp/exps/run"), TEMP_ROOT / "run")  # their executor info files
_FINISHED = 3  # dvc's TaskStatus: SUCCESS and later are finished


class DvcError(RuntimeError):
    """A `dvc` or `git` command failed (the message names why; `output` is all it printed)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


STOP_SECONDS = 60.0  # what a dvc stopped by Ctrl-C gets to stop its stage and clean up


def _cli_value(value: Any) -> str:
    # `-S` parses values as YAML: floats in full repr, lists in flow style.
    return repr(value) if isinstance(value, float) else yaml_scalar(value)


def run_dvc(args: list[str], root: Path, timeout: float = 600,
            env: Mapping[str, str] | None = None, log: Path | None = None) -> str:
    """Run `dvc ARGS` in `root`; its output (also written to `log`).

    Raises:
        DvcError: it failed or did not run; names the command and its last lines.
    """
    # Output goes to a file, not a pipe: a daemon that dvc leaves behind would keep a pipe
    # open, and reading it to EOF would wait for the daemon.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as output:
        try:
            process = subprocess.Popen(["dvc", *args], cwd=root, stdout=output,
                                       stderr=subprocess.STDOUT, text=True,
                                       env={**os.environ, **(env or {})})
        except OSError as error:
            raise DvcError(f"`dvc {' '.join(args[:3])} ...` did not run: {error}") from None
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise DvcError(f"`dvc {' '.join(args[:3])} ...` ran over {timeout:.0f} s") from None
        except KeyboardInterrupt:
            # Ctrl-C reached dvc too (same process group): let it stop its stage and remove
            # its temporary workspace, instead of killing it half way (subprocess.run would).
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
        output.seek(0)
        text = output.read()
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(text, encoding="utf-8")
    if code != 0:
        raise DvcError(cause(text), text)
    return text


def cause(log: str) -> str:
    """The line of a failed run's output that names why: a stage's own one-line error, else
    DVC's last ERROR line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    ours = [line for line in lines if ": error: " in line]
    theirs = [line for line in lines if line.startswith(("ERROR", "Error"))]
    return (ours or theirs or lines[-1:] or ["no output"])[-1]


def baseline_rev(root: Path) -> str:
    """The commit the trials are based on; `dvc exp` needs a git repo with one commit."""
    result = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=root,
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise DvcError(f"{root}: not a git repository with a commit; `dvc exp run` needs one "
                       "(git init && git add -A && git commit)")
    return result.stdout.strip()


def exp_run(root: Path, name: str, values: Mapping[str, Any], targets: Sequence[str],
            env: Mapping[str, str], log: Path) -> str:
    """Run one experiment named `name` in a temporary workspace; its baseline commit.

    `images/` (image-folder datasets, git-ignored, a dependency of the download stage) is
    copied in when it holds any: a temporary workspace has only what git and DVC track."""
    baseline = baseline_rev(root)
    images = root / "images"
    copy = [arg for path in sorted(images.iterdir()) if path.name != "README.md"
            for arg in ("-C", str(path.relative_to(root)))] if images.is_dir() else []
    args = ["exp", "run", "--temp", *copy, "--name", name, *targets]
    for key, value in values.items():
        args += ["-S", f"{key}={_cli_value(value)}"]
    run_dvc(args, root, timeout=24 * 3600, env=env, log=log)
    return baseline


def exp_ref(baseline: str, name: str) -> str:
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def read_metrics(root: Path, baseline: str, name: str, model: str) -> dict[str, Any]:
    """reports/<model>/metrics.json as the experiment committed it."""
    path = f"reports/{model}/metrics.json"
    result = subprocess.run(["git", "show", f"{exp_ref(baseline, name)}:{path}"], cwd=root,
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise DvcError(f"experiment {name} has no {path}: {result.stderr.strip()[:200]}")
    metrics: dict[str, Any] = json.loads(result.stdout)
    return metrics


def experiments_of(root: Path, baseline: str) -> set[str]:
    """The names of the experiments of `baseline` that DVC saved (a failed or stopped one
    saves none)."""
    prefix = exp_ref(baseline, "")
    result = subprocess.run(["git", "for-each-ref", "--format=%(refname)", prefix], cwd=root,
                            capture_output=True, text=True, timeout=60)
    return {line.removeprefix(prefix) for line in result.stdout.split()}


def has_experiment(root: Path, name: str) -> bool:
    result = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"],
                            cwd=root, capture_output=True, text=True, timeout=60)
    return any(line.rsplit("/", 1)[-1] == name for line in result.stdout.splitlines())


def remove_workspaces(root: Path, names: Sequence[str]) -> list[str]:
    """Remove the `--temp` workspaces (and their executor info) of the experiments `names`,
    left behind by a `dvc exp run` that was killed; the names removed. A finished run's info
    is left alone, and so is any workspace outside DVC's temp folder."""
    removed = []
    temp_root = (root / TEMP_ROOT).resolve()
    for info_dir in INFO_DIRS:
        for info_file in sorted((root / info_dir).glob("*/*.run")):
            try:
                info = json.loads(info_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if info.get("name") not in names or int(info.get("status", 0)) >= _FINISHED:
                continue
            workspace = Path(str(info.get("root_dir", ""))).resolve()
            if workspace.parent == temp_root and workspace.is_dir():
                shutil.rmtree(workspace, ignore_errors=True)
                removed.append(str(info["name"]))
            shutil.rmtree(info_file.parent, ignore_errors=True)
    return sorted(set(removed))


def leftover_workspaces(root: Path) -> list[Path]:
    """`--temp` workspaces present now (a finished or failed run removes its own)."""
    folder = root / TEMP_ROOT
    return sorted(path for path in folder.glob("tmp*") if path.is_dir()) \
        if folder.is_dir() else []
