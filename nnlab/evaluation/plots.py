"""The PNG figures of the evaluation and report stages (matplotlib, headless).

Each function writes one PNG atomically, with a fixed size and DPI and no timestamp in the
metadata, so the same inputs give the same bytes (nnlab/evaluation/figures.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display needed: stages run in CI and in DVC's queue workers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from nnlab.evaluation.figures import drawable, no_frame, short  # noqa: E402
from nnlab.evaluation.figures import save_png as _save  # noqa: E402

MAX_NAMED = 40  # class names on each axis of the confusion matrix, at most


def confusion_matrix_png(
    path: Path, matrix: NDArray[np.int64], classes: Sequence[str], title: str
) -> None:
    """A labelled heatmap: rows are the true class, columns the predicted one, with counts.
    Up to MAX_NAMED classes each axis names every class; beyond, every k-th, so that names
    never overlap (150 classes: every 4th; 1,000: every 25th)."""
    n = len(classes)
    side = min(max(4.0, 0.55 * n + 2.5), 14.0)
    figure, axes = plt.subplots(figsize=(side + 1.2, side))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    step = -(-n // MAX_NAMED)
    ticks = list(range(0, n, step))
    names = [short(classes[index]) for index in ticks]
    size = 10 if n <= 30 else 7
    wide = max(map(len, names)) > 2
    axes.set_xticks(ticks, names, rotation=45 if wide else 0, ha="right" if wide else "center",
                    fontsize=size)
    axes.set_yticks(ticks, names, fontsize=size)
    every = f" (every {step}th of {n:,} named)" if step > 1 else ""
    axes.set_xlabel(f"predicted class{every}")
    axes.set_ylabel(f"true class{every}")
    title = drawable(title)
    correct = int(np.trace(matrix))
    total = int(matrix.sum())
    axes.set_title(f"{title}\n{correct:,} of {total:,} correct ({correct / max(total, 1):.1%})")
    if n <= 30:
        for row in range(n):
            for column in range(n):
                if matrix[row, column]:
                    axes.text(column, row, f"{matrix[row, column]:,}", ha="center", va="center",
                              fontsize=8, color="white" if shares[row, column] > 0.5 else "black")
    figure.tight_layout()
    _save(figure, path)


def learning_curves_png(path: Path, history: Sequence[Mapping[str, float]], title: str,
                        single_fit: bool = True) -> None:
    """Loss and accuracy per epoch, training and validation side by side.

    A single row gets bars instead of a one-point curve: a model fitted in one go (logreg:
    one solver run), or with `single_fit=False` one epoch of a trial a sweep pruned.
    """
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [row["epoch"] for row in history]
    for axes, key in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        if len(history) == 1:
            values = [history[0][key], history[0][f"val_{key}"]]
            bars = axes.bar(["training", "validation"], values, color=["C0", "C1"], width=0.5)
            axes.bar_label(bars, labels=[f"{value:.4f}" for value in values], padding=2)
            axes.margins(y=0.12)
            axes.set_title(f"{key} (one fit, no epochs)" if single_fit
                           else f"{key} after epoch {history[0]['epoch']:g}")
        else:
            marker = "o" if len(epochs) <= 30 else None
            for prefix, label in (("", "training"), ("val_", "validation")):
                axes.plot(epochs, [row[prefix + key] for row in history], marker=marker,
                          markersize=3, label=f"{label} {key}")
            axes.set_xlabel("epoch")
            axes.legend()
            axes.set_title(key)
        axes.set_ylabel(key)
        axes.grid(alpha=0.3)
    if len(history) > 1:
        best = min(history, key=lambda row: row["val_loss"])
        loss_axes.axvline(best["epoch"], color="grey", linestyle=":", linewidth=1)
        loss_axes.set_title(f"loss (best validation loss at epoch {best['epoch']:g})")
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)


def misclassified_png(
    path: Path,
    images: NDArray[np.uint8],
    labels: NDArray[np.int64],
    probabilities: NDArray[np.floating],
    classes: Sequence[str],
    title: str,
    limit: int = 24,
) -> None:
    """A grid of the most confident mistakes: true class, predicted class and its probability."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:limit]
    columns = 6
    rows = max(1, -(-len(order) // columns))
    figure, grid = plt.subplots(rows, columns, figsize=(2 * columns, 2.3 * rows + 0.6),
                                squeeze=False)
    for axes in grid.flat:
        no_frame(axes)
    for axes, index in zip(grid.flat, order, strict=False):
        image = images[index]
        axes.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                    cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255,
                    interpolation="nearest")
        axes.set_title(
            f"true: {short(classes[labels[index]])}\npred: {short(classes[predicted[index]])} "
            f"({probabilities[index, predicted[index]]:.0%})",
            fontsize=7, color="firebrick",  # two names of 22 characters fit a 2-inch cell
        )
    if not len(order):
        grid.flat[0].text(0, 0.5, "no misclassified test images", fontsize=12)
    figure.suptitle(f"{title}: {len(wrong):,} of {len(labels):,} test images misclassified"
                    + (f", the {len(order)} most confident shown" if len(wrong) > limit else ""))
    figure.tight_layout()
    _save(figure, path)


def decision_boundary_png(
    path: Path,
    predict: Callable[[NDArray[np.float64]], NDArray[np.floating]],
    points: NDArray[np.float64],
    labels: NDArray[np.int64],
    classes: Sequence[str],
    limit: float,
    title: str,
) -> None:
    """Predicted class over the plane (shaded) with the points on top, coloured by class."""
    axis = np.linspace(-limit, limit, 300)
    grid_x, grid_y = np.meshgrid(axis, axis)
    probabilities = predict(np.column_stack([grid_x.ravel(), grid_y.ravel()]))
    predicted = probabilities.argmax(axis=1).reshape(grid_x.shape)
    figure, axes = plt.subplots(figsize=(6, 5.5))
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"]
    cmap = matplotlib.colors.ListedColormap(colors[: len(classes)])
    axes.contourf(grid_x, grid_y, predicted, levels=np.arange(len(classes) + 1) - 0.5,
                  cmap=cmap, alpha=0.25)
    for index, name in enumerate(classes):
        chosen = labels == index
        axes.scatter(points[chosen, 0], points[chosen, 1], s=12, color=colors[index],
                     edgecolors="black", linewidths=0.3, label=name)
    axes.set_xlim(-limit, limit)
    axes.set_ylim(-limit, limit)
    axes.set_aspect("equal")
    axes.set_xlabel("x1")
    axes.set_ylabel("x2")
    axes.legend(title="true class", loc="upper right")
    axes.set_title(title)
    figure.tight_layout()
    _save(figure, path)


def summary_png(path: Path, rows: Sequence[Mapping[str, Any]], best: str | None = None,
                tied: Sequence[str] = ()) -> None:
    """Validation and test accuracy per model, each a dot with its 95% interval as a bar:
    bars that overlap a lot are models the images cannot tell apart. The best model by
    validation, and those it ties, are named on the axis."""
    models = [str(row["model"]) for row in rows]
    positions = np.arange(len(models))[::-1]  # the first model on top
    figure, axes = plt.subplots(figsize=(8.0, max(3.0, 0.75 * len(models) + 1.6)))
    lowest = 1.0
    for offset, key, label, color in ((0.15, "val_accuracy", "validation", "tab:blue"),
                                      (-0.15, "test_accuracy", "test", "tab:orange")):
        values = np.array([float(row[key]) for row in rows])
        low = np.array([float(row.get(f"{key}_low", row[key])) for row in rows])
        high = np.array([float(row.get(f"{key}_high", row[key])) for row in rows])
        lowest = min(lowest, float(low.min()))
        axes.errorbar(values, positions + offset, xerr=[values - low, high - values], fmt="o",
                      color=color, capsize=4, label=f"{label} (95% interval)")
        for value, position in zip(values, positions + offset, strict=True):
            axes.annotate(f"{value:.3f}", (value, position), textcoords="offset points",
                          xytext=(0, 5), ha="center", fontsize=8, color=color)
    names = [f"{name}\n(best by val)" if name == best else
             f"{name}\n(tied with best)" if name in tied else name for name in models]
    axes.set_yticks(positions, names)
    axes.set_ylim(-0.7, len(models) - 0.3)
    axes.set_xlim(max(0.0, lowest - 0.02), 1.005)
    axes.set_xlabel("accuracy")
    axes.set_title("Accuracy per model with 95% intervals\n"
                   "(choose by validation, report test; overlapping bars: no clear winner)",
                   fontsize=10)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    _save(figure, path)
