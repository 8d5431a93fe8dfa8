"""The report stage: one row per model with its 95% intervals, every pair of models compared
on the same test images, and the best by validation with the models it ties, in
reports/summary.md (people), summary.json (machines), summary.csv (one row a model) and
summary.png (accuracies with interval bars)."""

from __future__ import annotations

import math
from typing import Any

from nnlab.core.files import read_json, write_csv, write_json, write_text
from nnlab.core.layout import BASELINES_FILE, TRAIN_INFO_FILE, Layout
from nnlab.evaluation.comparison import Pair, all_pairs, best_by_validation
from nnlab.evaluation.outcomes import OUTCOMES_FILE, read_outcomes
from nnlab.evaluation.uncertainty import ALPHA, LEVEL

# Metric -> its column in summary.csv (with _low and _high beside it) and its title in summary.md.
HEADLINES = {("val", "accuracy"): "val_accuracy", ("test", "accuracy"): "test_accuracy",
             ("test", "f1_macro"): "test_f1_macro"}
TRAINING = ("param_count", "training_seconds", "samples_per_second", "mlflow_run_id")
SUMMARY_COLUMNS = ["model", *(f"{name}{end}" for name in HEADLINES.values()
                              for end in ("", "_low", "_high")), *TRAINING]


def report(models: list[str], layout: Layout) -> list[dict[str, object]]:
    """Write reports/summary.{md,json,csv,png}; the rows of summary.csv."""
    rows = [_row(model_name, layout) for model_name in models]
    outcomes = {model_name: read_outcomes(layout.report_dir(model_name) / OUTCOMES_FILE)
                for model_name in models}
    test_pairs = all_pairs({name: found["test"] for name, found in outcomes.items()})
    best = best_by_validation({name: found["val"] for name, found in outcomes.items()})
    by_model = {str(row["model"]): row for row in rows}
    verdict = best.verdict(float(by_model[best.model]["val_accuracy"]))  # type: ignore[arg-type]

    write_csv(layout.reports / "summary.csv", SUMMARY_COLUMNS, rows)
    write_json(layout.reports / "summary.json", {
        "level": LEVEL, "alpha": ALPHA, "models": rows,
        "test_pairs": [pair.as_dict() for pair in test_pairs],
        "best_by_validation": {**best.as_dict(), "verdict": verdict.replace("**", "")},
    })
    val_accuracy = {model_name: float(row["val_accuracy"])  # type: ignore[arg-type]
                    for model_name, row in by_model.items()}
    text = "\n".join([
        "# Model comparison", "",
        f"Each accuracy and macro F1 with its {LEVEL:.0%} interval (Wilson; bootstrap over "
        "images for F1).", "",
        *_models_table(rows), "",
        verdict, "",
        *_pairs_table(test_pairs, int(outcomes[models[0]]["test"].labels.size)), "",
        "The data: [training images per class](data/samples.png), "
        "[images per class in each set](data/class_counts.png). Each model's predictions: "
        "`<model>/plots/probabilities.png`, e.g. "
        f"[{best.model}'s]({best.model}/plots/probabilities.png); each image's result: "
        f"`<model>/{OUTCOMES_FILE}`.", "",
        *_baselines_table(layout, val_accuracy),
    ])
    write_text(layout.reports / "summary.md", text)
    from nnlab.evaluation import plots  # late: matplotlib takes seconds to import

    plots.summary_png(layout.reports / "summary.png", rows, best.model, best.tied_with)
    return rows


def _row(model_name: str, layout: Layout) -> dict[str, object]:
    metrics = read_json(layout.report_dir(model_name) / "metrics.json")
    info = read_json(layout.model_dir(model_name) / TRAIN_INFO_FILE)
    if info.get("pruned"):
        raise ValueError(f"{model_name}: models/{model_name} is a sweep trial that was "
                         "pruned (no model, no test metrics); "
                         f"`dvc repro -f train@{model_name}` trains it")
    row: dict[str, object] = {"model": model_name}
    for (split, metric), name in HEADLINES.items():
        values = metrics[split]
        if f"{metric}_low" not in values:
            raise ValueError(f"reports/{model_name}/metrics.json has no interval for "
                             f"{split}.{metric} (an evaluation before intervals); "
                             f"`dvc repro -f evaluate@{model_name}` writes it")
        row.update({name: values[metric], f"{name}_low": values[f"{metric}_low"],
                    f"{name}_high": values[f"{metric}_high"]})
    row.update({key: info[key] for key in TRAINING})
    return row


def _models_table(rows: list[dict[str, Any]]) -> list[str]:
    def interval(row: dict[str, Any], name: str) -> str:
        return f"{row[name]:.4f} [{row[name + '_low']:.3f}, {row[name + '_high']:.3f}]"

    lines = ["| model | " + " | ".join(HEADLINES.values()) + " | " + " | ".join(TRAINING) + " |",
             "|---|" + "---:|" * (len(HEADLINES) + len(TRAINING) - 1) + "---|"]
    lines += [f"| {row['model']} | " + " | ".join(interval(row, name) for name in
                                                   HEADLINES.values())
              + f" | {row['param_count']:,} | {row['training_seconds']:,.1f} | "
              f"{row['samples_per_second']:,.0f} | {row['mlflow_run_id']} |" for row in rows]
    return lines


def _pairs_table(pairs: list[Pair], images: int) -> list[str]:
    """Every pair on the test set: the images only one got right, each way, and the test."""
    if not pairs:
        return []
    differing = [pair for pair in pairs if pair.differs]
    lines = [f"## Pairs of models on the same {images:,} test images", "",
             "Exact McNemar test on the images only one of the two gets right; p (Holm) is "
             f"corrected across the {len(pairs)} pairs. A pair differs when p (Holm) < "
             f"{ALPHA:g}.", "",
             "| model A | model B | right only by A | right only by B | p | p (Holm) | "
             "verdict |", "|---|---|---:|---:|---:|---:|---|"]
    lines += [f"| {pair.first} | {pair.second} | {pair.only_first} | {pair.only_second} | "
              f"{pair.p_value:.3f} | {pair.p_holm:.3f} | "
              f"{f'{pair.better} is better' if pair.better else 'no measurable difference'} |"
              for pair in pairs]
    lines += ["", f"{len(differing)} of {len(pairs)} pairs differ on the test set."
              if differing else "No pair of models differs measurably on the test set."]
    return lines


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

