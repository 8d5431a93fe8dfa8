"""`nnlab sweep`: its options, and one line per way it can end (an error, Ctrl-C or SIGTERM);
nnlab/search/runner.py does the work."""

from __future__ import annotations

import argparse
import signal
import sys

from nnlab.cli.one_line_errors import one_line_errors
from nnlab.core.catalog import MODEL_NAMES


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sweep = commands.add_parser(
        "sweep", help="hyperparameter search: an Optuna study shared by any number of workers, "
        "each trial a DVC experiment and an MLflow child run",
        description="Search params with an Optuna study: K workers here, and any number of "
        "the same command on other machines, share it until it has N finished trials. Each "
        "trial is a DVC experiment (<study>-t<number>) and an MLflow run nested under the "
        "study's parent run, scored by validation accuracy (never test). A killed worker's "
        "trial is retried; the same command resumes an interrupted study.",
    )
    # No argparse `choices`/`type` checks for model, counts, sampler and pruner: run_sweep
    # reports them in one line (exit 2), like every other bad spec.
    sweep.add_argument("--study", required=True, help="the study's name (names its trials)")
    sweep.add_argument("--model", help=f"one of: {', '.join(MODEL_NAMES)}")
    sweep.add_argument("--trials", type=int, default=20,
                       help="finished trials (complete + pruned) the study ends with "
                       "(default: 20)")
    sweep.add_argument("--workers", "--jobs", type=int, default=1, dest="workers",
                       help="worker processes on this machine (default: 1)")
    sweep.add_argument("--storage", help="Optuna storage URL: sqlite:///..., postgresql://..., "
                       "grpc://host:port (default: $NNLAB_OPTUNA_STORAGE, else "
                       "sqlite:///.nnlab/optuna.db)")
    sweep.add_argument("--sampler", help="tpe (default) | random | narrowing (the tutorials' "
                       "random search narrowed round by round)")
    sweep.add_argument("--pruner", default="median",
                       help="median (default) | hyperband | none: stop trials whose "
                       "validation accuracy lags, epoch by epoch")
    sweep.add_argument("--sample", action="append", default=[], metavar="KEY=DIST(ARGS)",
                       help="uniform(a,b), loguniform(a,b), int(a,b) or choice(x,y,...); a bare "
                       "KEY means <model>.KEY. Repeat for each param.")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a fixed param for every trial, e.g. numpy_dnn.epochs=5")
    sweep.add_argument("--rounds", type=int, default=1,
                       help="narrowing: rounds 2..R sample from ranges narrowed to the top "
                       "quarter so far (implies --sampler narrowing)")
    sweep.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    sweep.add_argument("--target", action="append", default=[], metavar="STAGE",
                       help="what each trial runs, as `dvc exp run` targets (default: "
                       "evaluate@<model> and the stages it needs, not the other models)")
    sweep.add_argument("--heartbeat", type=int, default=20,
                       help="seconds between a worker's heartbeats; a trial whose worker is "
                       "silent for 3x this is failed and retried (default: 20)")
    sweep.add_argument("--resume", action="store_true",
                       help="continue an existing study even though its search differs")
    sweep.add_argument("--report", action="store_true",
                       help="print the study's trials, ranked, and exit")
    sweep.add_argument("--apply-best", action="store_true",
                       help="apply the best trial: `dvc exp apply` if its experiment is here, "
                       "else its params into params.yaml")
    sweep.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from nnlab.search.dvc import DvcError
    from nnlab.search.storage import StorageError
    from nnlab.search.study import SweepError

    stopped_by = ["SIGINT"]

    def terminate(number: int, frame: object) -> None:
        stopped_by[0] = "SIGTERM"
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the stop itself must finish
        raise KeyboardInterrupt

    # `kill`, `timeout` or a cancelled CI job stop the sweep as Ctrl-C does: workers too.
    signal.signal(signal.SIGTERM, terminate)
    try:
        with one_line_errors("sweep"), one_line_errors(
                "sweep", errors=(SweepError, StorageError, DvcError), code=1):
            _run_sweep(args)
    except KeyboardInterrupt:
        number = signal.Signals[stopped_by[0]].value
        print(f"nnlab sweep: stopped by {stopped_by[0]}; the study keeps its finished trials: "
              f"the same command resumes it (`nnlab sweep --study {args.study} --report` shows "
              "it)", file=sys.stderr)
        raise SystemExit(128 + number) from None


def _run_sweep(args: argparse.Namespace) -> None:
    import optuna

    from nnlab.core.files import project_root
    from nnlab.search import runner

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print each trial's line
    report = lambda line: print(line, flush=True)  # noqa: E731
    if args.report or args.apply_best:
        from nnlab.search.apply import apply_best
        from nnlab.search.study import check_name, default_url, open_study
        from nnlab.search.study_report import study_report

        study, plan = open_study(args.storage or default_url(), check_name(args.study))
        if args.report:
            report(study_report(study, plan))
        if args.apply_best:
            apply_best(study, plan, project_root(), report)
        return
    if not args.model:
        raise ValueError(f"--model is required to run a study; choose one of: "
                         f"{', '.join(MODEL_NAMES)}")
    runner.run_sweep(runner.Options(
        args.model, args.study, args.sample, args.trials, args.workers, args.storage,
        args.sampler, args.pruner, args.set, args.rounds, args.seed, args.target, args.resume,
        args.heartbeat), report=report)


