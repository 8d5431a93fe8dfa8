"""`nnlab repeat --model M --seeds N [-S key=value ...] [--against -S key=value ...]
[--workers K]`: train and evaluate M once per seed, each time an ordinary DVC experiment
(`dvc exp run --temp -S M.seed=<seed> report`) and MLflow run, then print and keep the spread.

Only M's own randomness changes: its section's `seed` (params.yaml), not the top-level one,
so the split stays fixed and only train@M, evaluate@M and the report run. A repeat's
experiment is named from what it trains (`rep-<digest>-s<seed>`, the digest of M's params,
the data params and the workspace's uncommitted changes, under the current commit), so the
same command run again reuses every finished repeat and trains nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnlab.core.files import project_root, write_json, write_text
from nnlab.core.schema import ParamsError
from nnlab.evaluation import repeats
from nnlab.params import MODEL_NAMES, read, validate
from nnlab.search import dvc
from nnlab.search.space import apply_overrides, format_value, parse_overrides

MAX_SEEDS = 100  # each seed is one training: beyond this a typo, never an experiment
MAX_WORKERS = 16
REPORTS_DIR = Path("reports") / "repeats"
LOGS_DIR = Path(".nnlab") / "repeats"


@dataclass(frozen=True)
class Config:
    """One configuration of the model: its `-S` values over params.yaml, and the digest that
    names its repeats."""

    label: str
    overrides: dict[str, Any]
    digest: str

    def experiment(self, seed: int) -> str:
        return f"rep-{self.digest}-s{seed}"


@dataclass(frozen=True)
class Plan:
    model: str
    dataset: str
    seeds: list[int]
    configs: list[Config]
    workers: int


def make_plan(model: str, seeds: int, sets: list[str], against: list[str] | None,
              workers: int, root: Path) -> Plan:
    """Every bad input refused in one line before anything runs.

    Raises:
        ParamsError: an unknown model, a seed count or worker count out of range, a `-S` key
            outside M's section or a bad value.
    """
    if model not in MODEL_NAMES:
        raise ParamsError(f"--model {model!r}: unknown model; choose one of: "
                          f"{', '.join(MODEL_NAMES)}")
    if not 2 <= seeds <= MAX_SEEDS:
        raise ParamsError(f"--seeds {seeds}: choose 2 to {MAX_SEEDS} seeds (each is one "
                          "training; a spread needs two)")
    if not 1 <= workers <= MAX_WORKERS:
        raise ParamsError(f"--workers {workers}: choose 1 to {MAX_WORKERS}")
    raw = read(root / "params.yaml")
    top = validate(raw, [model, "data"])
    if against is not None and not against:
        raise ParamsError("--against: give the second configuration's -S key=value, "
                          f"e.g. --against -S {model}.learning_rate=0.003")
    chosen = [_overrides(model, pairs, raw) for pairs in (sets, *([against] if against else []))]
    tree = _uncommitted(root)
    configs = [_config(model, overrides, raw, tree) for overrides in chosen]
    if len(configs) == 2 and configs[1].digest == configs[0].digest:
        raise ParamsError("--against: the second configuration is the first one; change a "
                          "value with -S")
    return Plan(model, str(raw["data"]["dataset"]), [top.seed + index for index in
                                                      range(seeds)], configs, workers)


def _overrides(model: str, pairs: list[str], raw: dict[str, Any]) -> dict[str, Any]:
    """`-S` pairs as dotted keys of M's section, each value validated."""
    for pair in pairs:
        key = pair.partition("=")[0].strip()
        if "." in key and not key.startswith(f"{model}."):
            raise ParamsError(f"-S {pair}: outside {model}'s section; a repeat changes {model} "
                              "alone (the data and the other models stay as they are)")
        if key in ("seed", f"{model}.seed"):
            raise ParamsError(f"-S {pair}: the seeds are --seeds' to set (the top-level seed "
                              "and up); the top-level seed would also change the split")
    overrides = parse_overrides(pairs, model, flag="-S")
    validate(apply_overrides(raw, overrides), [model])  # a bad value: one line, nothing started
    return overrides


def _config(model: str, overrides: dict[str, Any], raw: dict[str, Any], tree: str) -> Config:
    changed = apply_overrides(raw, overrides)
    section = {key: value for key, value in changed[model].items() if key != "seed"}
    digest = hashlib.sha256(json.dumps(
        {"model": model, "section": section, "data": changed["data"], "seed": changed["seed"],
         "tree": tree}, sort_keys=True, default=str).encode()).hexdigest()[:10]
    label = ", ".join(f"{key.removeprefix(model + '.')}={format_value(value)}"
                      for key, value in overrides.items()) or "params.yaml"
    return Config(label, overrides, digest)


def _uncommitted(root: Path) -> str:
    """A digest of the tracked files' uncommitted changes (an experiment carries them), the
    reports aside: a repeat's own report must not make its repeats look new."""
    dvc.baseline_rev(root)  # a git repo with a commit, or one line saying so
    result = subprocess.run(["git", "diff", "HEAD", "--", ".", ":(exclude)reports"], cwd=root,
                            capture_output=True, timeout=60)
    return hashlib.sha256(result.stdout).hexdigest()[:16]


def finished(root: Path, baseline: str) -> set[str]:
    """The experiments of `baseline` that DVC saved (a failed or stopped one saves none)."""
    prefix = dvc.exp_ref(baseline, "")
    result = subprocess.run(["git", "for-each-ref", "--format=%(refname)", prefix], cwd=root,
                            capture_output=True, text=True, timeout=60)
    return {line.removeprefix(prefix) for line in result.stdout.split()}


def check_workspace(root: Path, model: str) -> None:
    """Only M's stages and the report may be out of date: anything else would run in every
    repeat (a data stage, another model).

    Raises:
        ParamsError: names the stages and `dvc repro`.
    """
    status = json.loads(dvc.run_dvc(["status", "--json"], root, timeout=600).strip() or "{}")
    others = sorted(stage for stage in status
                    if stage not in (f"train@{model}", f"evaluate@{model}", "report"))
    if others:
        raise ParamsError(f"{', '.join(others[:4])}{' ...' if len(others) > 4 else ''}: not up "
                          f"to date, and every repeat would run it; run `dvc repro` first, so "
                          f"that a repeat reruns {model} alone")


def run(plan: Plan, root: Path) -> dict[str, Any]:
    """Run every repeat not yet finished (K at a time), then summarize all of them: what
    `nnlab repeat` prints, writes to reports/repeats/ and logs to MLflow."""
    baseline = dvc.baseline_rev(root)
    done = finished(root, baseline)
    jobs = [(config, seed) for config in plan.configs for seed in plan.seeds
            if config.experiment(seed) not in done]
    reused = len(plan.configs) * len(plan.seeds) - len(jobs)
    print(f"nnlab repeat: {plan.model}, seeds {plan.seeds[0]}-{plan.seeds[-1]}, "
          f"{len(plan.configs)} configuration(s): {reused} repeat(s) already finished, "
          f"{len(jobs)} to run on {min(plan.workers, max(1, len(jobs)))} worker(s)",
          file=sys.stderr)
    failed: dict[tuple[str, int], str] = {}
    if jobs:
        check_workspace(root, plan.model)
        failed = _run_jobs(plan, jobs, root)
    results = {config.digest: repeats.Repeats(config.label) for config in plan.configs}
    for config in plan.configs:
        for seed in plan.seeds:
            name = config.experiment(seed)
            if (config.digest, seed) in failed:
                results[config.digest].failed[seed] = failed[(config.digest, seed)]
            else:
                results[config.digest].metrics[seed] = dvc.read_metrics(root, baseline, name,
                                                                         plan.model)
    return _summarize(plan, results, root)


def _run_jobs(plan: Plan, jobs: list[tuple[Config, int]], root: Path
              ) -> dict[tuple[str, int], str]:
    """Each job one `dvc exp run --temp`; a failed one is recorded with its reason and the
    others go on. Ctrl-C reaches every dvc (one process group): each stops its stage, which
    marks its MLflow run KILLED."""
    failed: dict[tuple[str, int], str] = {}

    def one(config: Config, seed: int) -> float:
        start = time.monotonic()
        name = config.experiment(seed)
        dvc.exp_run(root, name, {**config.overrides, f"{plan.model}.seed": seed}, ["report"],
                    env={}, log=root / LOGS_DIR / f"{name}.log")
        return time.monotonic() - start

    with ThreadPoolExecutor(plan.workers) as pool:
        futures: dict[Future[float], tuple[Config, int]] = {
            pool.submit(one, config, seed): (config, seed) for config, seed in jobs}
        pending = set(futures)
        while pending:
            complete, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in complete:
                config, seed = futures[future]
                try:
                    seconds = future.result()
                    print(f"nnlab repeat: {config.label}, seed {seed}: finished in "
                          f"{seconds:.0f} s", file=sys.stderr)
                except dvc.DvcError as error:
                    failed[(config.digest, seed)] = str(error)
                    print(f"nnlab repeat: {config.label}, seed {seed}: failed: {error} "
                          f"(log: {LOGS_DIR / (config.experiment(seed) + '.log')})",
                          file=sys.stderr)
    return failed


def _summarize(plan: Plan, results: dict[str, repeats.Repeats], root: Path) -> dict[str, Any]:
    summaries = [repeats.summary(results[config.digest]) for config in plan.configs]
    compared = (repeats.comparison(*(results[config.digest] for config in plan.configs))
                if len(plan.configs) == 2 else None)
    name = f"{plan.model}-{'-'.join(config.digest for config in plan.configs)}"
    found = {"model": plan.model, "dataset": plan.dataset, "seeds": plan.seeds,
             "experiments": {config.label: [config.experiment(seed) for seed in plan.seeds]
                             for config in plan.configs},
             "configurations": summaries, "comparison": compared}
    text = repeats.markdown(plan.model, summaries, compared)
    write_json(root / REPORTS_DIR / f"{name}.json", found)
    write_text(root / REPORTS_DIR / f"{name}.md", text)
    from nnlab.tracking import repeat_runs

    groups = [repeat_runs.Group(f"{plan.model}: {config.label} [{config.digest}]",
                                {seed: config.experiment(seed) for seed in plan.seeds}, found)
              for config, found in zip(plan.configs, summaries, strict=True)]
    repeat_runs.record(plan.dataset, plan.model, groups,
                       [root / REPORTS_DIR / f"{name}.{kind}" for kind in ("md", "json")])
    print(text)
    print(f"nnlab repeat: wrote {REPORTS_DIR / name}.md and .json; in MLflow each repeat's "
          f"run is tagged {repeat_runs.GROUP_TAG} (group the runs table by it), beside a "
          "summary run", file=sys.stderr)
    return found


class _Set(argparse.Action):
    """`-S key=value`: to the first configuration, or after `--against` to the second."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        target = namespace.against if namespace.against is not None else namespace.sets
        target.append(values)


class _Against(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        namespace.against = []


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "repeat", help="train and evaluate one model once per seed (its own randomness only), "
        "as DVC experiments and MLflow runs, and print the spread",
        description="Repeat one model's training with N seeds of its own (init, batch order, "
        "dropout, augmentation; the split stays fixed): each repeat is a DVC experiment "
        "(`dvc exp run --temp`) that reruns only that model's stages and the report, and an "
        "MLflow run tagged with its group. Prints mean, std, min, max and the 95%% t-interval "
        "of validation and test accuracy and macro F1. The same command again reuses the "
        "finished repeats. --against -S ... repeats a second configuration with the same "
        "seeds and tests the paired difference.")
    parser.add_argument("--model", required=True, help=f"one of {', '.join(MODEL_NAMES)}")
    parser.add_argument("--seeds", type=int, required=True,
                        help=f"how many seeds (2 to {MAX_SEEDS}), from the top-level seed up")
    parser.add_argument("-S", "--set", action=_Set, dest="sets", default=[],
                        metavar="KEY=VALUE", help="a value of the model's section for every "
                        "repeat, as `dvc exp run -S` (after --against: the second "
                        "configuration's)")
    parser.add_argument("--against", action=_Against, nargs=0, default=None,
                        help="the -S options after it make a second configuration, repeated "
                        "with the same seeds and compared in pairs")
    parser.add_argument("--workers", type=int, default=1,
                        help="repeats run at once (default: 1; each takes a core or more)")


def main(args: argparse.Namespace) -> None:
    from nnlab.core.errors import USER_ERRORS

    root = project_root()
    try:
        plan = make_plan(args.model, args.seeds, args.sets, args.against, args.workers, root)
        run(plan, root)
    except (*USER_ERRORS, dvc.DvcError) as error:  # type: ignore[misc]
        print(f"nnlab repeat: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("nnlab repeat: stopped; each stopped repeat's MLflow run ended KILLED, and the "
              "finished ones are kept: the same command goes on", file=sys.stderr)
        raise SystemExit(130) from None
