"""Whether two trained models' test accuracies differ by more than chance: both models of a
project (`dvc repro` or `benchmarks/quality.py --keep DIR`) predict the same test images, and
McNemar's exact test looks only at the images on which exactly one of them is right.

    python benchmarks/paired_test.py PROJECT [--models numpy_cnn cnn]

It prints each model's test accuracy with its 95% Wilson interval, the counts of images only
one model gets right, and the exact two-sided p-value. A p-value far above 0.05 means the test
set cannot tell the two models apart.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnlab.core.contract import load_split  # noqa: E402
from nnlab.core.layout import Layout  # noqa: E402
from nnlab.core.quiet import filtered_stderr  # noqa: E402
from nnlab.models.base import get_model_class  # noqa: E402


def wilson(right: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion right/total."""
    share = right / total
    middle = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) \
        / (1 + z * z / total)
    return middle - half, middle + half


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: the discordant images as Binomial(n, 1/2)."""
    n, low = only_first + only_second, min(only_first, only_second)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(low + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a project whose models are trained")
    parser.add_argument("--models", nargs=2, default=["numpy_cnn", "cnn"], metavar="MODEL")
    args = parser.parse_args()
    layout = Layout(args.project)
    images, labels = load_split(layout.prepared, "test")
    right = {}
    for name in args.models:
        with filtered_stderr():  # TensorFlow's notices, for a Keras model
            model = get_model_class(name).load(layout.model_dir(name))
            right[name] = model.predict_proba(images).argmax(axis=1) == labels
        low, high = wilson(int(right[name].sum()), len(labels))
        print(f"{name:>10}: test accuracy {right[name].mean():.4f} on {len(labels)} images, "
              f"95% interval {low:.4f}-{high:.4f}")
    first, second = (right[name] for name in args.models)
    only_first, only_second = int(np.sum(first & ~second)), int(np.sum(~first & second))
    print(f"right only by {args.models[0]}: {only_first}; only by {args.models[1]}: "
          f"{only_second}; by both: {int(np.sum(first & second))}; by neither: "
          f"{int(np.sum(~first & ~second))}")
    print(f"McNemar's exact test, two-sided: p = {mcnemar_exact(only_first, only_second):.3f}")


if __name__ == "__main__":
    main()
