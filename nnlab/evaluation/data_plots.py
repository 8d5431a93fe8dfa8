"""The data, seen before any model learns from it (the Keras Fashion-MNIST tutorial's first
picture): stage `data_report` writes reports/data/

    samples.png       a few training images of every class, chosen by the seed, labelled
                      (2-D points: the training points, coloured by class)
    class_counts.png  training, validation and test images per class: imbalance, or a class
                      that vanished, at a glance
    class_counts.csv  the same counts, for `dvc plots show`

A photo folder shows here how its images came out after resizing and grey conversion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nnlab.arrays.contract import load_classes, load_split
from nnlab.core.files import write_csv
from nnlab.core.layout import Layout
from nnlab.data import points
from nnlab.evaluation.figures import no_frame, save_png, short

MAX_CLASSES_SHOWN = 100  # samples.png: a grid of one image per class beyond 10 classes
MAX_NAMED_ROWS = 120  # class_counts.png: class names on its axis, at most


def per_class(n_classes: int) -> int:
    """Images shown per class: rows of 6 up to 10 classes, 3 up to 20, then one each."""
    return 6 if n_classes <= 10 else 3 if n_classes <= 20 else 1


def sample_rows(labels: NDArray[np.int64], n_classes: int, seed: int) -> list[list[int]]:
    """For each class, `per_class` indices of its images drawn by the seed (sorted), or
    fewer if it has fewer."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(n_classes):
        members = np.flatnonzero(labels == index)
        take = min(per_class(n_classes), len(members))
        rows.append(sorted(int(i) for i in rng.choice(members, take, replace=False)))
    return rows


def _draw(axes: object, image: NDArray[np.uint8]) -> None:
    axes.imshow(image[..., 0] if image.shape[-1] == 1 else image,  # type: ignore[attr-defined]
                cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255,
                interpolation="nearest")
    no_frame(axes)


def samples_png(path: Path, images: NDArray[np.uint8], labels: NDArray[np.int64],
                classes: Sequence[str], seed: int, title: str) -> int:
    """The sample grid; the number of images drawn."""
    import matplotlib.pyplot as plt

    shown = list(range(min(len(classes), MAX_CLASSES_SHOWN)))
    rows = sample_rows(labels, len(shown), seed)
    k = per_class(len(shown))
    shape = tuple(images.shape[1:])
    if k == 1:  # one image per class, in a square grid titled by class
        columns = int(np.ceil(np.sqrt(len(shown))))
        lines = -(-len(shown) // columns)
        figure, grid = plt.subplots(lines, columns, squeeze=False,
                                    figsize=(1.4 * columns, 1.55 * lines + 0.6))
        for axes in grid.flat:
            no_frame(axes)
        for axes, index in zip(grid.flat, shown, strict=False):
            if rows[index]:
                _draw(axes, images[rows[index][0]])
            axes.set_title(short(classes[index]), fontsize=7)
    else:  # one row per class, its name on the left
        figure, grid = plt.subplots(len(shown), k, squeeze=False,
                                    figsize=(1.3 * k + 1.6, 1.3 * len(shown) + 0.6))
        for index, line in zip(shown, grid, strict=True):
            for axes, chosen in zip(line, rows[index] + [None] * k, strict=False):
                if chosen is None:
                    no_frame(axes)
                else:
                    _draw(axes, images[chosen])
            line[0].text(-0.1, 0.5, short(classes[index]), transform=line[0].transAxes,
                         ha="right", va="center", fontsize=10)
    more = f"; the first {len(shown)} of {len(classes)} classes" \
        if len(shown) < len(classes) else ""
    figure.suptitle(f"{title}: training images, {shape[0]}x{shape[1]}"
                    f"{' grey' if shape[2] == 1 else ' RGB'}{more}")
    figure.tight_layout(rect=(0, 0, 1, 0.985))
    save_png(figure, path)
    return sum(len(rows[index][:k]) for index in shown)


def points_png(path: Path, images: NDArray[np.uint8], labels: NDArray[np.int64],
               classes: Sequence[str], title: str) -> None:
    import matplotlib.pyplot as plt

    coordinates = points.coordinates(np.asarray(images))
    figure, axes = plt.subplots(figsize=(6, 5.5))
    for index, name in enumerate(classes):
        chosen = labels == index
        axes.scatter(coordinates[chosen, 0], coordinates[chosen, 1], s=10, label=name)
    axes.set_xlim(-points.LIMIT, points.LIMIT)
    axes.set_ylim(-points.LIMIT, points.LIMIT)
    axes.set_aspect("equal")
    axes.legend(title="class")
    axes.set_title(f"{title}: {len(labels):,} training points")
    figure.tight_layout()
    save_png(figure, path)


def class_counts_png(path: Path, counts: Mapping[str, NDArray[np.int64]],
                     classes: Sequence[str], title: str) -> int:
    """Stacked horizontal bars per class: training, validation and test images; the number
    of classes drawn."""
    import matplotlib.pyplot as plt

    positions = np.arange(len(classes))
    figure, axes = plt.subplots(figsize=(9, min(max(3.0, 0.24 * len(classes) + 1.6), 30.0)))
    left = np.zeros(len(classes))
    for name, color in (("train", "C0"), ("val", "C1"), ("test", "C2")):
        axes.barh(positions, counts[name], left=left, color=color,
                  label={"train": "training", "val": "validation", "test": "test"}[name])
        left += counts[name]
    # Every class named up to MAX_NAMED_ROWS; beyond, every k-th, so that names never overlap.
    step = -(-len(classes) // MAX_NAMED_ROWS)
    axes.set_yticks(positions[::step], [short(name) for name in classes[::step]],
                    fontsize=8 if len(classes) > 30 else 10)
    if step > 1:
        axes.set_ylabel(f"class (every {step}th of {len(classes):,} named)")
    axes.set_ylim(len(classes) - 0.5, -0.5)  # first class on top, no empty margin
    axes.set_xlabel("images")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    train = counts["train"]
    smallest, largest = int(train.argmin()), int(train.argmax())
    axes.set_title(f"{title}: images per class\nfewest training images: class "
                   f"{short(classes[smallest])}, {train[smallest]:,}; most: class "
                   f"{short(classes[largest])}, {train[largest]:,}", fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    save_png(figure, path)
    return len(positions)


def data_report(dataset: str, seed: int, layout: Layout) -> dict[str, int]:
    """Write reports/data/ from the split; the number of images per set."""
    classes = load_classes(layout.prepared)
    train_images, train_labels = load_split(layout.split, "train")
    labels = {"train": train_labels, "val": load_split(layout.split, "val")[1],
              "test": load_split(layout.prepared, "test")[1]}
    counts = {name: np.bincount(found, minlength=len(classes)) for name, found in labels.items()}
    folder = layout.reports / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if dataset == "planar":
        points_png(folder / "samples.png", train_images, train_labels, classes, dataset)
    else:
        samples_png(folder / "samples.png", train_images, train_labels, classes, seed, dataset)
    class_counts_png(folder / "class_counts.png", counts, classes, dataset)
    write_csv(folder / "class_counts.csv", ["class", "train", "val", "test"],
              [{"class": name, **{split: int(counts[split][index])
                                  for split in ("train", "val", "test")}}
               for index, name in enumerate(classes)])
    return {name: int(found.shape[0]) for name, found in labels.items()}
