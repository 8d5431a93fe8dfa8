"""A study: what it searches (its plan, kept in the study's own user attrs so that every worker
on every machine reads the same one), created or joined, and its sampler."""

from __future__ import annotations

import math
import os
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from nnlab.core.files import project_root
from nnlab.search.space import Range, parse_spec
from nnlab.search.storage import DEFAULT_FILE, masked, open_storage
from nnlab.search.trial_link import make_pruner

SAMPLERS = ("tpe", "random", "narrowing")
STORAGE_ENV = "NNLAB_OPTUNA_STORAGE"  # set by `.nnlab/server/env` (make server) for workers
PLAN_ATTR = "nnlab.plan"
SEARCH_KEYS = ("model", "space", "fixed", "targets")  # a study searches one of these only
PARENT_ATTR = "nnlab.parent_run_id"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # also a valid piece of a git ref


class SweepError(RuntimeError):
    """A study could not run or finish (its storage, DVC or every trial refused)."""


@dataclass(frozen=True)
class Plan:
    """What a study searches and how: set once by the `nnlab sweep` that creates it."""

    model: str
    space: list[str]  # each `--sample` range as text (Range.__str__)
    fixed: dict[str, Any] = field(default_factory=dict)  # `--set`
    targets: list[str] = field(default_factory=list)  # `dvc exp run` targets of a trial
    trials: int = 20  # finished (complete + pruned) trials the study ends with
    sampler: str = "tpe"
    pruner: str = "median"
    rounds: int = 1  # narrowing only
    seed: int = 0
    heartbeat: int = 20  # seconds; a silent worker's trial fails after 3x
    experiment: str = "digits"  # the MLflow experiment (the dataset's name)
    max_epochs: int | None = None  # the model's epochs, for hyperband

    def ranges(self) -> list[Range]:
        return [parse_spec(text, self.model) for text in self.space]

    def difference(self, other: Plan) -> str:
        """How the search differs (model, space, fixed params, targets); "" if trials of both
        are comparable."""
        return "; ".join(f"{key} {getattr(self, key)} here, {getattr(other, key)} in the study"
                         for key in SEARCH_KEYS if getattr(self, key) != getattr(other, key))


def default_url(root: Path | None = None) -> str:
    """$NNLAB_OPTUNA_STORAGE when set (`.nnlab/server/env` sets the team stack's gRPC proxy
    for other machines); else the PostgreSQL of a team stack running from this project
    (`make server`); else the SQLite file in .nnlab/, with nothing to start."""
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    root = root or project_root()
    return _team_stack_url(root) or f"sqlite:///{root / DEFAULT_FILE}"


def stack_tracking(url: str, root: Path) -> str | None:
    """When `url` is the Optuna storage of the team stack running from this project and
    MLFLOW_TRACKING_URI is not set, set the MLflow variables of the stack's env file
    (.nnlab/server/env) in this process, for it and its workers: a study's runs go to the
    store its trials' study is in. The tracking URI so set, or None."""
    if os.environ.get("MLFLOW_TRACKING_URI") or url != _team_stack_url(root):
        return None
    env_file = root / ".nnlab" / "server" / "env"
    found = {}
    for line in env_file.read_text(encoding="utf-8").splitlines() if env_file.is_file() else []:
        name, _, value = line.removeprefix("export ").partition("=")
        if name.startswith("MLFLOW_TRACKING_") and value:
            found[name] = value
    if "MLFLOW_TRACKING_URI" not in found:
        raise SweepError(f"the study is in the team stack's storage, but {env_file} does not "
                         "say where its MLflow server is: source the env file `nnlab server "
                         "start` wrote, or set MLFLOW_TRACKING_URI")
    os.environ.update(found)
    return found["MLFLOW_TRACKING_URI"]


def _team_stack_url(root: Path) -> str | None:
    from nnlab.server.postgres import Postgres
    from nnlab.server.settings import ServerError, Settings

    settings = Settings.load(root / ".nnlab" / "server")
    if settings is None:
        return None
    try:
        return Postgres(settings).url("_optuna")
    except ServerError:  # made once, not running now
        return None


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"--study {name!r}: use 1-64 letters, digits, '-' or '_' (it names "
                         "the trials' DVC experiments), e.g. --study lr-search")
    return name


def worker_seed(seed: int, host: str, slot: int, index: int) -> int:
    """A seed per worker: workers with one seed would propose the same params in parallel.
    `slot` tells apart the sweep commands of one host (runner.command_slot), `index` the
    workers of one command; the same command on its own draws the same seeds again."""
    return int(zlib.crc32(f"{seed}:{host}:{slot}:{index}".encode()))


def make_sampler(plan: Plan, seed: int | None) -> optuna.samplers.BaseSampler:
    if plan.sampler == "tpe":
        # constant_liar: parallel workers do not all propose next to the same running trial
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=min(10, max(3, plan.trials // 4)), constant_liar=True)
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    from nnlab.search.narrowing import NarrowingSampler

    return NarrowingSampler(plan.rounds, math.ceil(plan.trials / plan.rounds), seed)


def open_study(url: str, name: str, plan: Plan | None = None, resume: bool = False,
               seed: int | None = None, retry: bool = False) -> tuple[optuna.Study, Plan]:
    """Join the study `name` in `url`, or create it from `plan`. A worker passes no plan and
    runs the study's own.

    Raises:
        StorageError: the storage does not answer.
        SweepError: no such study (worker), or a study that searches another space and no
            `resume`.
    """
    heartbeat = plan.heartbeat if plan else _stored_heartbeat(url, name)
    storage = open_storage(url, heartbeat, retry)
    existing = {summary.study_name for summary in optuna.get_all_study_summaries(storage)} \
        if plan else {name}
    if name in existing:
        stored = _stored_plan(storage, name, url)
        if plan is not None and plan.difference(stored) and not resume:
            raise SweepError(
                f"study {name!r} in {masked(url)} searches something else ("
                f"{plan.difference(stored)}); pick a new --study, or pass --resume to continue "
                "it with this search")
        if plan is not None and plan != stored:
            _store_plan(storage, name, plan)  # --resume, or a new --trials target
        plan = plan or stored
    elif plan is None:
        raise SweepError(f"no study {name!r} in {masked(url)}")
    else:
        optuna.create_study(study_name=name, storage=storage, direction="maximize",
                            load_if_exists=True)
        _store_plan(storage, name, plan)
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(plan, seed),
                              pruner=make_pruner(plan.pruner, plan.max_epochs))
    return study, plan


def _store_plan(storage: Any, name: str, plan: Plan) -> None:
    study = optuna.load_study(study_name=name, storage=storage)
    study.set_user_attr(PLAN_ATTR, asdict(plan))


def _stored_plan(storage: Any, name: str, url: str) -> Plan:
    attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    if PLAN_ATTR not in attrs:
        raise SweepError(f"study {name!r} in {masked(url)} was not made by `nnlab sweep`; "
                         "pick another --study")
    return Plan(**attrs[PLAN_ATTR])


def _stored_heartbeat(url: str, name: str) -> int:
    try:
        storage = open_storage(url)
        return int(_stored_plan(storage, name, url).heartbeat)
    except KeyError:
        raise SweepError(f"no study {name!r} in {masked(url)}") from None
