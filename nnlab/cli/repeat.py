"""`nnlab repeat --model M --seeds N [-S key=value ...] [--against -S key=value ...]`: M
trained and evaluated once per seed, and the spread; the work is nnlab/search/seed_repeats.py."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from nnlab.cli.one_line_errors import fail, one_line_errors
from nnlab.core.catalog import MODEL_NAMES
from nnlab.core.errors import USER_ERRORS
from nnlab.search.repeat_plan import MAX_SEEDS


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
        "MLflow run tagged with its group. Prints mean, std, min, max and the 95% t-interval "
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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from nnlab.core.files import project_root
    from nnlab.search import dvc, seed_repeats
    from nnlab.search.repeat_plan import make_plan

    root = project_root()
    signal.signal(signal.SIGTERM, seed_repeats.stop_on_sigterm)  # as by Ctrl-C
    try:
        with one_line_errors("repeat", errors=(*USER_ERRORS, dvc.DvcError)):
            plan = make_plan(args.model, args.seeds, args.sets, args.against, args.workers,
                             root)
            found = seed_repeats.run(plan, root)
    except KeyboardInterrupt:
        print("nnlab repeat: stopped; each stopped repeat's MLflow run ended KILLED, and the "
              "finished ones are kept: the same command goes on", file=sys.stderr)
        raise SystemExit(130) from None
    empty = [summary for summary in found["configurations"] if not summary["seeds"]]
    if empty:  # nothing to summarize on one side: a script must not read it as a result
        first = empty[0]
        fail("repeat", f"no repeat of {first['label']} finished (seed "
             f"{next(iter(first['failed']))}: {next(iter(first['failed'].values()))})", 1)
