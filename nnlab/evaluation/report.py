"""The report stage: one row per model in reports/summary.csv and summary.md, and
summary.png comparing them."""

from __future__ import annotations

import math

from nnlab.core.files import read_json, write_csv, write_text
from nnlab.core.layout import BASELINES_FILE, TRAIN_INFO_FILE, Layout

# Column -> how summary.md shows it (summary.csv keeps the raw values).
SUMMARY_FORMATS = {
    "model": "{}",
    "val_accuracy": "{:.4f}",
    "test_accuracy": "{:.4f}",
    "test_f1_macro": "{:.4f}",
    "param_count": "{:,}",
    "training_seconds": "{:,.1f}",
    "samples_per_second": "{:,.0f}",
    "mlflow_run_id": "{}",
}
SUMMARY_COLUMNS = list(SUMMARY_FORMATS)


def report(models: list[str], layout: Layout) -> list[dict[str, object]]:
    """One row per model in reports/summary.csv and summary.md; summary.png compares them."""
    rows: list[dict[str, object]] = []
    val_accuracy: dict[str, float] = {}  # unrounded, to compare with the baselines
    for model_name in models:
        metrics = read_json(layout.report_dir(model_name) / "metrics.json")
        val_accuracy[model_name] = float(metrics["val"]["accuracy"])
        info = read_json(layout.model_dir(model_name) / TRAIN_INFO_FILE)
        if info.get("pruned"):
            raise ValueError(f"{model_name}: models/{model_name} is a sweep trial that was "
                             "pruned (no model, no test metrics); "
                             f"`dvc repro -f train@{model_name}` trains it")
        rows.append(
            {
                "model": model_name,
                "val_accuracy": round(metrics["val"]["accuracy"], 4),
                "test_accuracy": round(metrics["test"]["accuracy"], 4),
                "test_f1_macro": round(metrics["test"]["f1_macro"], 4),
                "param_count": info["param_count"],
                "training_seconds": info["training_seconds"],
                "samples_per_second": info["samples_per_second"],
                "mlflow_run_id": info["mlflow_run_id"],
            }
        )
    write_csv(layout.reports / "summary.csv", SUMMARY_COLUMNS, rows)
    header = "| " + " | ".join(SUMMARY_COLUMNS) + " |"
    rule = "|---|" + "---:|" * (len(SUMMARY_COLUMNS) - 2) + "---|"
    lines = [
        "| " + " | ".join(SUMMARY_FORMATS[key].format(row[key]) for key in SUMMARY_COLUMNS) + " |"
        for row in rows
    ]
    best = max(rows, key=lambda row: float(row["val_accuracy"]))  # type: ignore[arg-type]
    text = "\n".join(
        [
            "# Model comparison",
            "",
            header,
            rule,
            *lines,
            "",
            f"Best by validation accuracy: **{best['model']}**. "
            "Test metrics are reported, never used to choose.",
            "",
            "The data: [training images per class](data/samples.png), "
            "[images per class in each set](data/class_counts.png). Each model's predictions: "
            "`<model>/plots/probabilities.png`, e.g. "
            f"[{best['model']}'s]({best['model']}/plots/probabilities.png).",
            "",
            *_baselines_table(layout, val_accuracy),
        ]
    )
    write_text(layout.reports / "summary.md", text)
    from nnlab.evaluation import plots  # late: matplotlib takes seconds to import

    plots.summary_png(layout.reports / "summary.png", rows)
    return rows


def _baselines_table(layout: Layout, val_accuracy: dict[str, float]) -> list[str]:
    """scikit-learn's baselines (reports/baselines.json) on the same split, and which of our
    models beat the best of them on validation, and which tie it."""
    path = layout.reports / BASELINES_FILE
    if not path.is_file():
        return []
    baselines = read_json(path)["rows"]
    if not baselines:
        return []
    lines = ["## Classical baselines on the same split", "",
             "| baseline | val_accuracy | test_accuracy | training_seconds | train_samples |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {row['description']} | {row['val_accuracy']:.4f} | "
              f"{row['test_accuracy']:.4f} | {row['training_seconds']:,.1f} | "
              f"{row['train_samples']:,} |" for row in baselines]
    best = max(baselines, key=lambda row: row["val_accuracy"])
    # The same validation images: equal accuracies are equal counts, a tie, not a miss.
    level = float(best["val_accuracy"])
    tied = [model for model, score in val_accuracy.items() if math.isclose(score, level)]
    beat = [model for model, score in val_accuracy.items() if score > level and model not in tied]
    lines += ["", f"Above the best baseline ({best['model']}, validation accuracy "
              f"{best['val_accuracy']:.4f}): {', '.join(beat) or 'none of our models'}"
              f"{'; level with it: ' + ', '.join(tied) if tied else ''}.", ""]
    return lines
