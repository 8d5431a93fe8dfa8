"""`nnlab repeat --model M --seeds N [-S key=value ...] [--against -S key=value ...]
[--workers K]`: train and evaluate M once per seed, each time an ordinary DVC experiment
(`dvc exp run --temp -S M.seed=<seed> report`) and MLflow run, then print and keep the spread.

Only M's own randomness changes: its section's `seed` (params.yaml), not the top-level one,
so the split stays fixed and only train@M, evaluate@M and the report run. A repeat's
experiment is named from what it trains (`rep-<digest>-s<seed>`, the digest of M's params,
the data params, the commit and the workspace's uncommitted changes), so the same command run
again reuses every finished repeat and trains nothing.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from nnlab.core.files import write_json, write_text
from nnlab.core.schema import ParamsError
from nnlab.evaluation import repeats
from nnlab.search import dvc
from nnlab.search.repeat_plan import Config, RepeatPlan

REPORTS_DIR = Path("reports") / "repeats"
LOGS_DIR = Path(".nnlab") / "repeats"


def check_workspace(root: Path, model: str) -> None:
    """Only M's stages and the report may be out of date: anything else would run in every
    repeat (a data stage, another model).

    Raises:
        ParamsError: names the stages and `dvc repro`.
    """
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "dvc.lock"], cwd=root,
                             capture_output=True, timeout=60)
    if tracked.returncode != 0:  # `dvc exp run --temp` copies only what git tracks
        raise ParamsError("dvc.lock is not committed, and an experiment starts from the commit: "
                          "every stage would run in every repeat; commit the trained pipeline "
                          "first (git add dvc.lock reports && git commit)")
    status = json.loads(dvc.run_dvc(["status", "--json"], root, timeout=600).strip() or "{}")
    others = sorted(stage for stage in status
                    if stage not in (f"train@{model}", f"evaluate@{model}", "report"))
    if others:
        raise ParamsError(f"{', '.join(others[:4])}{' ...' if len(others) > 4 else ''}: not up "
                          f"to date, and every repeat would run it; run `dvc repro` first, so "
                          f"that a repeat reruns {model} alone")


def run(plan: RepeatPlan, root: Path) -> dict[str, Any]:
    """Run every repeat not yet finished (K at a time), then summarize all of them: what
    `nnlab repeat` prints, writes to reports/repeats/ and logs to MLflow."""
    baseline = dvc.baseline_rev(root)
    done = dvc.experiments_of(root, baseline)
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


def _run_jobs(plan: RepeatPlan, jobs: list[tuple[Config, int]], root: Path
              ) -> dict[tuple[str, int], str]:
    """Each job one `dvc exp run --temp`; a failed one is recorded with its reason and the
    others go on. Ctrl-C or SIGTERM: no new one starts, and each running dvc stops its stage,
    which marks its MLflow run KILLED."""
    failed: dict[tuple[str, int], str] = {}

    def one(config: Config, seed: int) -> float:
        start = time.monotonic()
        name = config.experiment(seed)
        dvc.exp_run(root, name, {**config.overrides, f"{plan.model}.seed": seed}, ["report"],
                    env={}, log=root / LOGS_DIR / f"{name}.log")
        return time.monotonic() - start

    pool = ThreadPoolExecutor(plan.workers)
    futures: dict[Future[float], tuple[Config, int]] = {
        pool.submit(one, config, seed): (config, seed) for config, seed in jobs}
    pending = set(futures)
    try:
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
    except KeyboardInterrupt:
        # No new repeat starts; the running ones stop as after Ctrl-C. A terminal's Ctrl-C
        # reached them already (one process group); a SIGTERM to this process alone did not.
        for future in pending:
            future.cancel()
        if _TERMINATED:
            _interrupt_children()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return failed


def _interrupt_children() -> None:
    """SIGINT to every process under this one (each `dvc exp run` and its stage): each stops
    and cleans up as after Ctrl-C, its MLflow run ending KILLED."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.send_signal(signal.SIGINT)


_TERMINATED = False  # set by SIGTERM, which reaches this process alone


def stop_on_sigterm(number: int, frame: object) -> None:
    global _TERMINATED
    _TERMINATED = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once
    raise KeyboardInterrupt


def _summarize(plan: RepeatPlan, results: dict[str, repeats.Repeats], root: Path
               ) -> dict[str, Any]:
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
    from nnlab.search import repeat_runs

    groups = [repeat_runs.Group(f"{plan.model}: {config.label} [{config.digest}]",
                                {seed: config.experiment(seed) for seed in plan.seeds}, found)
              for config, found in zip(plan.configs, summaries, strict=True)]
    link = repeat_runs.record(plan.dataset, plan.model, groups,
                              [root / REPORTS_DIR / f"{name}.{kind}" for kind in ("md", "json")])
    print(text, flush=True)  # before the lines on stderr that follow it
    print(f"nnlab repeat: wrote {REPORTS_DIR / name}.md and .json. In MLflow each repeat's run "
          f"is tagged {repeat_runs.GROUP_TAG}, beside a summary run; the runs grouped by repeat, "
          f"with their intervals (`make ui` first for the local store): {link}", file=sys.stderr)
    return found
