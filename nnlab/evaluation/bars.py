"""Each prediction's probabilities as bars, beside its image (as the Keras CIFAR-10 tutorial
draws them): how a model spreads its belief, not only its top class.

evaluate writes reports/<model>/plots/probabilities.png (the most confidently wrong test
images first, then a correct one); `nnlab predict FILES --plot out.png` draws the given files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nnlab.evaluation.figures import no_frame, save_png, short

SHOWN_CLASSES = 12  # more classes than this: the 10 most likely, and the true class
MAX_PANELS = 16  # images drawn by `nnlab predict --plot`: the first ones given


def chosen_for_evaluation(labels: NDArray[np.int64], probabilities: NDArray[np.floating],
                          wrong: int = 3) -> list[int]:
    """Test images to draw: the `wrong` most confidently misclassified, then the correct one
    of median confidence (a typical right answer)."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    mistakes = np.flatnonzero(predicted != labels)
    chosen = [int(i) for i in mistakes[np.argsort(-confidence[mistakes], kind="stable")][:wrong]]
    right = np.flatnonzero(predicted == labels)
    if len(right):
        by_confidence = right[np.argsort(confidence[right], kind="stable")]
        chosen.append(int(by_confidence[len(by_confidence) // 2]))
    return chosen


def _shown(row: NDArray[np.floating], true: int | None) -> list[int]:
    """Class indices on one panel's axis: every class, or the 10 most likely and the true
    one, most likely first."""
    if len(row) <= SHOWN_CLASSES:
        return list(range(len(row)))
    top = [int(i) for i in np.argsort(-row, kind="stable")[:10]]
    if true is not None and true not in top:
        top.append(true)
    return top


def _heading(classes: Sequence[str], predicted: int, probability: float, truth: int | None,
             name: str | None) -> str:
    """One short line each (a file's name, the verdict, the true class): a heading never runs
    past the figure, whatever the names."""
    right = truth is None or truth == predicted
    verdict = (f"predicted {short(classes[predicted])} ({probability:.0%})" +
               ("" if truth is None else ": right" if right
                else f"\ntrue class {short(classes[truth])}"))
    return f"{short(name)}\n{verdict}" if name is not None else verdict


def probabilities_png(path: Path, images: NDArray[np.uint8],
                      probabilities: NDArray[np.floating], classes: Sequence[str],
                      title: str, labels: Sequence[int | None] | None = None,
                      names: Sequence[str] | None = None) -> list[int]:
    """One row per image: the image, and a bar per class (its probability); the predicted
    class's bar green if right, red if wrong, the true class (when `labels` give it) named
    "(true)". `names` title each row (file names); without, the row is titled by its
    verdict. Returns the number of classes drawn in each row."""
    import matplotlib.pyplot as plt

    drawn_rows: list[int] = []
    truths = list(labels) if labels is not None else [None] * len(images)
    heights = [max(1.6, 0.2 * len(_shown(row, truth)) + 0.9) for row, truth in
               zip(probabilities, truths, strict=True)]
    figure, grid = plt.subplots(max(len(images), 1), 2, squeeze=False,
                                figsize=(9, max(sum(heights), 1.5) + 0.8),
                                gridspec_kw={"width_ratios": [1, 2.6],
                                             "height_ratios": heights or [1]})
    for row_axes, image, row, truth, index in zip(grid, images, probabilities, truths,
                                                  range(len(images)), strict=False):
        picture, bars = row_axes
        picture.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                       cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255,
                       interpolation="nearest")
        no_frame(picture)
        shown = _shown(row, truth)
        drawn_rows.append(len(shown))
        predicted = int(np.argmax(row))
        right = truth is None or predicted == truth
        colors = ["C0" if c == predicted and truth is None else
                  "seagreen" if c == predicted and right else "firebrick" if c == predicted
                  else "steelblue" if c == truth else "lightgray" for c in shown]
        positions = np.arange(len(shown))
        drawn = bars.barh(positions, [row[c] for c in shown], color=colors)
        bars.bar_label(drawn, labels=[f"{row[c]:.1%}" if row[c] >= 0.005 or c == truth else ""
                                      for c in shown], padding=2, fontsize=8)
        bars.set_yticks(positions, [short(classes[c]) + (" (true)" if c == truth else "")
                                    for c in shown], fontsize=8)
        bars.invert_yaxis()
        bars.set_xlim(0, 1.15)
        bars.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25%", "50%", "75%", "100%"],
                        fontsize=8)
        bars.grid(axis="x", alpha=0.3)
        heading = _heading(classes, predicted, row[predicted], truth,
                           None if names is None else names[index])
        bars.set_title(heading, fontsize=9, loc="left",
                       color="firebrick" if not right else "black")
        if len(shown) < len(row):
            bars.set_xlabel(f"the {len(shown)} most likely of {len(row)} classes", fontsize=8)
    if not len(images):
        no_frame(grid[0, 0])
        no_frame(grid[0, 1])
        grid[0, 1].text(0, 0.5, "no images to draw", fontsize=12)
    figure.suptitle(title)
    figure.tight_layout()
    save_png(figure, path)
    return drawn_rows
