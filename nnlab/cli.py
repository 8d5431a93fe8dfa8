"""The `nnlab` command: `nnlab predict --model cnn img.png [more.png ...] [--json]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nnlab.errors import USER_ERRORS
from nnlab.params import MODEL_NAMES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="top-3 classes of image files, for a model trained by `dvc repro`",
        description="Print the 3 most likely classes of each image, using the model in "
        "models/<model> and the preprocessing it was trained with (size, grey/RGB, scaling).",
    )
    predict.add_argument("--model", required=True, choices=MODEL_NAMES)
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    predict.add_argument("--models-dir", type=Path, default=Path("models"),
                         help="where `dvc repro` put the models (default: models)")
    predict.add_argument("--top", type=int, default=3, help="classes per image (default: 3)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    from nnlab.predict import predict  # late: `nnlab --help` should not load TensorFlow

    try:
        predictions = predict(args.models_dir / args.model, args.images, top=args.top)
    except USER_ERRORS as error:
        print(f"nnlab predict: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.json:
        print(json.dumps([item.as_dict() for item in predictions], indent=2))
        return
    for item in predictions:
        ranked = ", ".join(f"{name} {probability:.1%}" for name, probability in item.top)
        print(f"{item.image}: {ranked}")


if __name__ == "__main__":
    main()
