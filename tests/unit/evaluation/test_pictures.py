"""The pictures of issue 47: the data before training (reports/data/) and each prediction's
probabilities as bars: readable PNGs of the expected size, with the expected panels, the
same bytes from the same seed, and readable at 100 classes with long names."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnlab.arrays.contract import save_classes, save_split
from nnlab.core.layout import Layout
from nnlab.evaluation import bars, data_plots
from nnlab.evaluation.figures import DPI
from tests.support.helpers import make_images


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def test_samples_show_six_images_of_every_class_chosen_by_the_seed(tmp_path: Path) -> None:
    images, labels = make_images(9, 10)
    classes = [str(i) for i in range(10)]
    drawn = data_plots.samples_png(tmp_path / "a.png", images, labels, classes, 0, "t")
    assert drawn == 60
    assert _size(tmp_path / "a.png") == (int((1.3 * 6 + 1.6) * DPI), int((1.3 * 10 + 0.6) * DPI))
    data_plots.samples_png(tmp_path / "b.png", images, labels, classes, 0, "t")
    data_plots.samples_png(tmp_path / "c.png", images, labels, classes, 1, "t")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()
    rows = data_plots.sample_rows(labels, 10, 0)
    assert all(labels[index] == label for label, row in enumerate(rows) for index in row)


def test_a_hundred_classes_with_long_names_are_one_image_each_in_a_square(
        tmp_path: Path) -> None:
    images, labels = make_images(2, 100, shape=(16, 16, 3))
    classes = [f"a photo folder with a long name number {i}" for i in range(100)]
    assert data_plots.samples_png(tmp_path / "s.png", images, labels, classes, 0, "t") == 100
    assert _size(tmp_path / "s.png") == (int(1.4 * 10 * DPI), int((1.55 * 10 + 0.6) * DPI))
    counts = {name: np.bincount(labels, minlength=100) for name in ("train", "val", "test")}
    assert data_plots.class_counts_png(tmp_path / "c.png", counts, classes, "t") == 100
    width, height = _size(tmp_path / "c.png")
    assert width == 9 * DPI and height == int((0.24 * 100 + 1.6) * DPI)


def test_a_class_with_fewer_images_than_a_row_shows_what_it_has(tmp_path: Path) -> None:
    images, labels = make_images(8, 3)
    labels[labels == 2] = 1
    labels[-2:] = 2  # class 2: two images
    assert data_plots.samples_png(tmp_path / "s.png", images, labels, ["a", "b", "c"], 0,
                                  "t") == 6 + 6 + 2


def test_data_report_writes_the_pictures_and_the_counts(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    images, labels = make_images(10, 4)
    save_classes(layout.prepared, ["cat", "dog", "emu", "fox"])
    save_split(layout.split, "train", images, labels)
    save_split(layout.split, "val", images[::2], labels[::2])
    save_split(layout.prepared, "test", images[:12], labels[:12])
    counts = data_plots.data_report("folder", 0, layout)
    assert counts == {"train": 40, "val": 20, "test": 12}
    folder = tmp_path / "reports" / "data"
    for name in ("samples.png", "class_counts.png"):
        _size(folder / name)
    with open(folder / "class_counts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0] == {"class": "cat", "train": "10", "val": "5", "test": "10"}
    assert [row["test"] for row in rows] == ["10", "2", "0", "0"]  # a vanished class shows


def test_evaluation_draws_the_most_confident_mistakes_then_a_typical_right_answer() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    probabilities = np.array([[0.2, 0.7, 0.1],   # wrong, 0.7
                              [0.1, 0.8, 0.1],   # right, 0.8
                              [0.95, 0.0, 0.05],  # wrong, 0.95
                              [0.9, 0.05, 0.05],  # right, 0.9
                              [0.6, 0.3, 0.1],   # wrong, 0.6
                              [0.1, 0.1, 0.8],   # right, 0.8
                              [0.3, 0.3, 0.4]])  # wrong, 0.4
    chosen = bars.chosen_for_evaluation(labels, probabilities)
    assert chosen[:3] == [2, 0, 4] and chosen[3] in (1, 5)


def test_probability_bars_show_every_class_or_the_top_ten_and_the_true_one(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images, _ = make_images(1, 4, shape=(8, 8, 3))
    ten = rng.dirichlet(np.ones(10), 4)
    assert bars.probabilities_png(tmp_path / "a.png", images, ten, [str(i) for i in range(10)],
                                  "t", labels=[0, 1, 2, 3]) == [10, 10, 10, 10]
    hundred = rng.dirichlet(np.ones(100), 4)
    true = int(np.argmin(hundred[0]))  # never in the top ten: drawn as an eleventh bar
    rows = bars.probabilities_png(tmp_path / "b.png", images, hundred,
                                  [f"class number {i} with a long name" for i in range(100)],
                                  "t", labels=[true, None, None, None])
    assert rows == [11, 10, 10, 10]
    width, height = _size(tmp_path / "b.png")
    assert width == 9 * DPI and height == int((sum(0.2 * n + 0.9 for n in rows) + 0.8) * DPI)


NAMES = ["日本", "Ελλάδα", "کلاس", "a-very-long-class-name-that-goes-on-" + "x" * 40, "Ünïcödé"]


@pytest.mark.parametrize("n", [2, 150, 1000])
def test_every_picture_stays_readable_and_quiet_from_2_to_1000_classes(
        tmp_path: Path, n: int, capfd: pytest.CaptureFixture[str]) -> None:
    """Any Unicode class name, long ones, and up to 1,000 classes: no "Glyph missing" or
    "Tight layout not applied" warning, nothing on the console, each axis naming at most
    40 (confusion) or 120 (counts) classes, and no name longer than an axis allows."""
    import warnings

    import matplotlib.pyplot as plt

    from nnlab.evaluation import bars, figures, plots

    rng = np.random.default_rng(0)
    classes = [f"{NAMES[i % len(NAMES)]} {i}" for i in range(n)]
    images = rng.integers(0, 256, (3 * n, 8, 8, 1), dtype=np.uint8)
    labels = np.repeat(np.arange(n), 3)
    probabilities = rng.dirichlet(np.ones(n), 3 * n).astype(np.float32)
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (labels, probabilities.argmax(axis=1)), 1)
    drawn: list[list[str]] = []
    original = figures.save_png

    def keeping_labels(figure: object, path: Path) -> None:
        drawn.extend([[tick.get_text() for tick in axes.get_yticklabels()]
                      for axes in figure.axes])  # type: ignore[attr-defined]
        original(figure, path)  # type: ignore[arg-type]

    with warnings.catch_warnings(record=True) as caught, pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("always")
        patch.setattr(plots, "_save", keeping_labels)
        patch.setattr(data_plots, "save_png", keeping_labels)
        patch.setattr(bars, "save_png", keeping_labels)
        plots.confusion_matrix_png(tmp_path / "confusion.png", matrix, classes, "日本 digits")
        plots.misclassified_png(tmp_path / "misclassified.png", images, labels, probabilities,
                                classes, "probe")
        chosen = bars.chosen_for_evaluation(labels, probabilities)
        bars.probabilities_png(tmp_path / "probabilities.png", images[chosen],
                               probabilities[chosen], classes, "probe",
                               labels=[int(labels[i]) for i in chosen])
        data_plots.class_counts_png(tmp_path / "counts.png", {
            "train": np.full(n, 3), "val": np.ones(n, int), "test": np.ones(n, int)},
            classes, "probe")
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr() == ("", "")
    assert {path.name for path in tmp_path.iterdir()} == {
        "confusion.png", "misclassified.png", "probabilities.png", "counts.png"}
    assert max(len(names) for names in drawn) <= 120
    assert len(drawn[0]) <= 40  # the confusion matrix's true classes
    every = [name for names in drawn for name in names]
    assert every and all(len(name) <= figures.NAME_CHARS + len(" (true)") for name in every)
    assert plt.get_fignums() == []  # every figure closed


def test_a_name_no_installed_font_can_draw_is_written_as_code_points() -> None:
    from nnlab.evaluation.figures import _fonts, drawable, short

    _, covered = _fonts()
    assert drawable("Ελλάδα 7") == "Ελλάδα 7"  # DejaVu Sans has Greek
    if ord("日") not in covered:  # no CJK font installed (fonts-noto-cjk draws it)
        assert drawable("日本") == "U+65E5U+672C"
    assert short("x" * 40) == "x" * 21 + "…"
