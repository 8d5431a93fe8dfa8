"""One checkpoint per train stage, so that a training stopped at any moment (SIGTERM, Ctrl-C,
SIGKILL, a reboot, a tracking server that was down at the end) goes on from its last finished
epoch at the next `dvc repro` or `dvc exp run`.

- Where: `.nnlab/checkpoints/train@<model>.<key>.npz` under the repository root (DVC_ROOT for
  queued and temp experiments, which run in a copy), outside DVC's outputs: `dvc repro`
  removes a stage's outputs before it runs it, and a stopped stage removes its own.
- Keyed by exactly what the stage trains on: its params (the model's section, `seed`,
  `data.dataset`), its data (the split, classes.json) and every file of code it runs, as
  nnlab/training/stage_code.py reads it from the imports (what `make deps` writes into
  dvc.yaml). A checkpoint for anything else has another key and is never read; the key is also
  stored inside and checked.
- What: plain arrays and one JSON document (no pickle), written atomically, so a stop in the
  middle of a write leaves the previous epoch's checkpoint. Written after every epoch that
  ends at least live.SEND_EVERY (2 s) after the last one written, and after the last epoch:
  every epoch of a real training, one per 2 s of a run of 20 ms epochs.
- Removed when the stage ends: trained, pruned, or failed for a reason a rerun would meet
  again (a diverging loss). NNLAB_RESTART=1 throws a stage's checkpoint away and trains from
  scratch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nnlab.core.files import atomic_path, project_root
from nnlab.core.layout import CHECKPOINTS_DIR, Layout
from nnlab.core.schema import Params, flatten
from nnlab.training import stage_code
from nnlab.training.live_metrics import Pacer

FOLDER = CHECKPOINTS_DIR
RESTART_VARIABLE = "NNLAB_RESTART"
RESTART_HINT = f"{RESTART_VARIABLE}=1 trains from scratch"
META_KEY, KEY_KEY = "__meta__", "__key__"
STALE_SECONDS = 7 * 24 * 3600  # another key's checkpoint untouched this long is dropped


def stage_deps(model: str) -> list[Path]:
    """What `train@<model>` reads, sorted: the code it runs (nnlab/training/stage_code.py,
    the lists `make deps` writes into dvc.yaml) and its data (Layout.inputs, folders
    expanded, in the workspace the stage runs in: a temp experiment's copy too), as absolute
    paths."""
    files = [stage_code.CODE_ROOT / file for file in stage_code.stage_files("train", model)]
    root = Path.cwd().resolve()
    for path in Layout().inputs("train", model):
        if (root / path).is_dir():
            files += [file for file in (root / path).rglob("*") if file.is_file()]
        elif (root / path).is_file():
            files.append(root / path)
    return sorted(set(files))


# Where the processes of a training meet, and how long they wait: not what is trained, so
# neither in the checkpoint's key nor in the roll call's params hash (a resume may start
# process 0 on another machine).
PLACEMENT_ONLY = ("coordinator", "join_timeout")


def stage_params(model: str, params: Params) -> dict[str, Any]:
    """What of params.yaml `train@<model>` trains with."""
    section = {key: value for key, value in flatten(params.model_params(model)).items()
               if key not in PLACEMENT_ONLY}
    return {"model": model, "seed": params.model_seed(model), "dataset": params.data.dataset,
            "params": section}


def _hash(digest: Any, paths: list[Path]) -> Any:
    """`paths`' bytes into `digest`, each named by its path from its root (the code's, or the
    workspace's), so that a copy of the project hashes alike."""
    roots = (stage_code.CODE_ROOT, Path.cwd().resolve())
    for path in paths:
        root = next(root for root in roots if path.is_relative_to(root))
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest


def stage_key(model: str, params: Params) -> str:
    """What `train@<model>` trains on, as a hash: its params and its deps' bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps(stage_params(model, params), sort_keys=True, default=str).encode())
    return str(_hash(digest, stage_deps(model)).hexdigest()[:16])


def fingerprint(model: str, params: Params) -> dict[str, str]:
    """What every process of a training must share (nnlab/training/roll_call.py): the git
    commit, the code, the params, the data, each hashed alone so that a refusal names which
    differs, and the process count."""
    code = [stage_code.CODE_ROOT / file for file in stage_code.stage_files("train", model)]
    data = [path for path in stage_deps(model) if path not in set(code)]
    return {"processes": str(getattr(params.model_params(model), "processes", 1)),
            "commit": _git_commit(),
            "code": _hash(hashlib.sha256(), sorted(code)).hexdigest()[:16],
            "params": hashlib.sha256(json.dumps(stage_params(model, params), sort_keys=True,
                                                default=str).encode()).hexdigest()[:16],
            "data": _hash(hashlib.sha256(), data).hexdigest()[:16]}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "none (not a git checkout)"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def inconsistency(arrays: dict[str, NDArray[Any]], meta: dict[str, Any], extra: Any,
                  last_epoch: int | None) -> str | None:
    """Why a checkpoint's own numbers cannot be those of the training it would resume (a
    training of `last_epoch` epochs), or None. Its key says which training it belongs to;
    this says whether what it holds could have come from it."""
    epoch = meta.get("epoch")
    if type(epoch) is not int or epoch < 1:
        return f"its epoch is {epoch!r}, not a count of finished epochs"
    if last_epoch is not None and epoch > last_epoch:
        return f"it says epoch {epoch} of a training of {last_epoch} epochs"
    rows = meta.get("rows")
    if not isinstance(rows, list) or len(rows) != epoch:
        count = len(rows) if isinstance(rows, list) else "no"
        return f"its history has {count} rows for {epoch} epochs"
    for number, row in enumerate(rows, start=1):
        if not (isinstance(row, dict) and row.get("epoch") == number
                and all(_number(value) for value in row.values())):
            return f"its history's row {number} is not epoch {number}'s numbers"
    best = meta.get("best_epoch", 0)
    if type(best) is not int or not 0 <= best <= epoch:
        return f"its best epoch {best!r} is not one of its {epoch} epochs"
    if not isinstance(extra, dict):
        return "its stage record is not a mapping"
    seconds = extra.get("seconds", 0.0)
    if not _number(seconds) or not 0 <= seconds < float("inf"):
        return f"its training time {seconds!r} is not a number of seconds"
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            return f"its array {name!r} holds {array.dtype}, not numbers"
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return f"its array {name!r} is not finite"
    return None


class StageCheckpoint:
    """The checkpoint of one train stage for one key (a models.base.Checkpoint)."""

    def __init__(self, model: str, key: str, root: Path | None = None,
                 last_epoch: int | None = None) -> None:
        self.model, self.key, self.last_epoch = model, key, last_epoch
        self._pacer = Pacer()
        self.folder = (root or project_root()) / FOLDER
        self.path = self.folder / f"train@{model}.{key}.npz"
        self.extra: dict[str, Any] = {}  # what the stage adds (its MLflow run id)
        self._saved: tuple[dict[str, NDArray[Any]], dict[str, Any]] | None = None
        self._loaded = False
        self._clock: float | None = None
        self._received: bytes | None = None  # process 0's, held by a joining process

    @classmethod
    def received(cls, model: str, params: Params, data: bytes) -> StageCheckpoint:
        """Process 0's checkpoint as a joining process holds it (nnlab/training/roll_call.py):
        read from `data` (b"": none) with every check, never written or removed."""
        epochs = getattr(params.model_params(model), "epochs", None)
        checkpoint = cls(model, stage_key(model, params), last_epoch=epochs)
        checkpoint._received = data
        return checkpoint

    @classmethod
    def for_stage(cls, model: str, params: Params) -> StageCheckpoint:
        epochs = getattr(params.model_params(model), "epochs", None)
        checkpoint = cls(model, stage_key(model, params), last_epoch=epochs)
        if os.environ.get(RESTART_VARIABLE, "").strip() not in ("", "0"):
            checkpoint.remove()
        return checkpoint

    def saved(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]] | None:
        """The model's (arrays, meta) from the file, or None when there is none (or it is
        unreadable: a checkpoint only ever saves time, so a bad one is dropped, not fatal)."""
        if not self._loaded:
            self._loaded = True
            self._saved = self._read()
        return self._saved

    def _read(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]] | None:
        if self._received is not None and not self._received:
            return None
        if self._received is None and not self.path.is_file():
            return None
        try:
            source = io.BytesIO(self._received) if self._received is not None else self.path
            with np.load(source, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            meta = json.loads(str(arrays.pop(META_KEY)))
            key = str(arrays.pop(KEY_KEY))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            print(f"train@{self.model}: ignoring an unreadable checkpoint {self.path} "
                  f"({type(error).__name__}: {error}); training from scratch")
            self.remove()
            return None
        if key != self.key:  # a file renamed by hand: never trust the name alone
            self.remove()
            return None
        extra = meta.pop("stage", {})
        problem = inconsistency(arrays, meta, extra, self.last_epoch)
        if problem:
            print(f"train@{self.model}: ignoring the checkpoint {self.path}: {problem}; "
                  "training from scratch")
            self.remove()
            return None
        self.extra = extra
        return arrays, meta

    @property
    def epoch(self) -> int:
        """The last finished epoch saved, 0 if none."""
        saved = self.saved()
        return int(saved[1].get("epoch", 0)) if saved else 0

    def start_clock(self) -> None:
        """Training starts now: each save adds the time since to the saved training time."""
        self._clock = time.monotonic()
        self._before = float(self.extra.get("seconds", 0.0))

    @property
    def seconds(self) -> float:
        """Training time so far, over every run that this checkpoint went on from."""
        since = 0.0 if self._clock is None else time.monotonic() - self._clock
        return float(self.extra.get("seconds", 0.0)) if self._clock is None else \
            self._before + since

    def save(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        """Write the state after an epoch: every epoch if epochs take longer than
        live.SEND_EVERY; else the first, the last (`meta["epoch"]` reaching `last_epoch`, or
        early stopping's), and one per SEND_EVERY seconds between, so that short epochs do
        not spend their time writing checkpoints (benchmarks/README.md, "Long runs")."""
        final = (self.last_epoch is not None and int(meta.get("epoch", 0)) >= self.last_epoch
                 or bool(meta.get("stopped")) or bool(meta.get("stopped_early")))
        if not (self._pacer.due() or final) or self._received is not None:
            return
        self.extra["seconds"] = self.seconds
        document = json.dumps({**meta, "stage": self.extra})
        with atomic_path(self.path) as part, open(part, "wb") as handle:
            np.savez(handle, allow_pickle=False, **arrays,
                     **{META_KEY: np.array(document), KEY_KEY: np.array(self.key)})

    def remove(self) -> None:
        """Drop this checkpoint, and other keys' checkpoints of the stage left for a week."""
        self._saved, self._loaded = None, True
        if self._received is not None:
            return  # process 0's, not ours
        self.path.unlink(missing_ok=True)
        now = time.time()
        for other in self.folder.glob(f"train@{self.model}.*.npz"):
            try:
                if now - other.stat().st_mtime > STALE_SECONDS:
                    other.unlink()
            except OSError:
                pass
