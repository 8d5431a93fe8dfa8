"""The `nnlab` command.

    nnlab predict --model cnn img.png [more.png | folder ...] [--json]
    nnlab sweep --model numpy_dnn --trials 20 --jobs 2 \\
        --sample 'learning_rate=loguniform(1e-4,1e-1)' [--set numpy_dnn.epochs=5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nnlab.errors import USER_ERRORS
from nnlab.params import MODEL_NAMES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="top-3 classes of image files, for a model trained by `dvc repro`",
        description="Print the 3 most likely classes of each image, using the model in "
        "models/<model> and the preprocessing it was trained with (size, grey/RGB, scaling).",
    )
    predict.add_argument("--model", required=True, choices=MODEL_NAMES)
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                         help="image files, or folders searched for images (recursively)")
    predict.add_argument("--models-dir", type=Path, default=Path("models"),
                         help="where `dvc repro` put the models (default: models)")
    predict.add_argument("--top", type=int, default=3, help="classes per image (default: 3)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_sweep(commands)
    return parser


def _add_sweep(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sweep = commands.add_parser(
        "sweep", help="random hyperparameter search as queued DVC experiments, ranked by "
        "validation accuracy",
        description="Sample params at random, run each trial as a queued DVC experiment, rank "
        "the trials by validation accuracy (never test) and narrow the ranges around the top "
        "quarter for the next round. Trials are MLflow runs nested under one parent run.",
    )
    # No argparse `choices`/`type` checks for model and counts: run_sweep reports them in
    # one line (exit 2), like every other bad spec.
    sweep.add_argument("--model", required=True, help=f"one of: {', '.join(MODEL_NAMES)}")
    sweep.add_argument("--trials", type=int, default=20, help="trials per round (default: 20)")
    sweep.add_argument("--jobs", type=int, default=2,
                       help="experiments run at a time, `dvc queue start -j` (default: 2)")
    sweep.add_argument("--sample", action="append", default=[], metavar="KEY=DIST(ARGS)",
                       help="uniform(a,b), loguniform(a,b), int(a,b) or choice(x,y,...); a bare "
                       "KEY means <model>.KEY. Repeat for each param.")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a fixed param for every trial, e.g. numpy_dnn.epochs=5")
    sweep.add_argument("--rounds", type=int, default=1,
                       help="rounds 2..N sample from the previous round's narrowed ranges")
    sweep.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    sweep.add_argument("--target", action="append", default=[], metavar="STAGE",
                       help="what each trial runs, as `dvc exp run` targets (default: "
                       "evaluate@<model> and the stages it needs, not the other models)")
    sweep.add_argument("--timeout", type=float, default=6 * 3600,
                       help="seconds to wait for one round (default: 21600)")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "sweep":
        _sweep(args)
        return
    from nnlab.predict import predict  # late: `nnlab --help` should not load TensorFlow

    try:
        predictions, skipped = predict(args.models_dir / args.model, args.images, top=args.top)
    except USER_ERRORS as error:
        print(f"nnlab predict: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.json:
        print(json.dumps([item.as_dict() for item in predictions], indent=2))
    else:
        for item in predictions:
            ranked = ", ".join(f"{name} {probability:.1%}" for name, probability in item.top)
            print(f"{item.image}: {ranked}")
    for path, reason in skipped:  # stderr: stdout stays one line (or JSON) per prediction
        print(f"nnlab predict: skipped {path}: {reason}", file=sys.stderr)
    if skipped:
        print(f"nnlab predict: {len(predictions)} image(s) predicted, {len(skipped)} "
              "file(s) skipped", file=sys.stderr)


def _sweep(args: argparse.Namespace) -> None:
    from nnlab.sweep import SweepError, SweepInterrupted, run_sweep

    try:
        run_sweep(
            args.model, args.sample, args.trials, jobs=args.jobs, overrides=args.set,
            rounds=args.rounds, seed=args.seed, targets=args.target, timeout=args.timeout,
            report=lambda line: print(line, flush=True),
        )
    except USER_ERRORS as error:
        print(f"nnlab sweep: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except SweepError as error:
        print(f"nnlab sweep: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except SweepInterrupted as error:
        print(f"nnlab sweep: {error}", file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:  # before any trial was queued
        print("nnlab sweep: interrupted before any trial was queued", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
