"""What seed repeats of one model say: the spread of each headline metric over the seeds, and
for two configurations repeated with the same seeds, the paired difference and a one-line
verdict. `nnlab repeat` (nnlab/search/seed_repeats.py) runs the repeats; this module only reads
their metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nnlab.evaluation.uncertainty import ALPHA, LEVEL, paired, spread

METRICS = ("val.accuracy", "val.f1_macro", "test.accuracy", "test.f1_macro")
VERDICT_METRICS = ("val.accuracy", "test.accuracy")


@dataclass
class Repeats:
    """One configuration's repeats: seed -> metrics.json (as read from the experiment), and
    seed -> why a repeat has none (it failed, diverged or was stopped)."""

    label: str
    metrics: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def values(self, metric: str, seeds: Sequence[int] | None = None) -> list[float]:
        split, key = metric.split(".")
        chosen = sorted(self.metrics) if seeds is None else seeds
        return [float(self.metrics[seed][split][key]) for seed in chosen]


def summary(runs: Repeats) -> dict[str, Any]:
    """Mean, std, min, max and the 95% t-interval of each headline metric over the seeds."""
    found: dict[str, Any] = {"label": runs.label, "seeds": sorted(runs.metrics),
                             "failed": {str(seed): why for seed, why in runs.failed.items()}}
    if runs.metrics:
        found["metrics"] = {metric: spread(runs.values(metric)).as_dict() for metric in METRICS}
    return found


def comparison(first: Repeats, second: Repeats) -> dict[str, Any]:
    """`second - first` on the seeds both finished: for each headline metric the mean
    difference, its 95% interval and the paired t-test's p-value, with a verdict line."""
    seeds = sorted(set(first.metrics) & set(second.metrics))
    found: dict[str, Any] = {"seeds": seeds, "metrics": {}, "verdicts": {}}
    if len(seeds) < 2:
        found["verdicts"] = {metric: f"{metric}: not comparable: {len(seeds)} seed(s) finished "
                             "on both sides, a paired test needs 2" for metric in
                             VERDICT_METRICS}
        return found
    for metric in METRICS:
        result = paired(first.values(metric, seeds), second.values(metric, seeds))
        found["metrics"][metric] = result.as_dict()
        if metric in VERDICT_METRICS:
            found["verdicts"][metric] = verdict(metric, second.label, first.label,
                                                result.mean, result.interval, result.p_value,
                                                len(seeds))
    return found


def verdict(metric: str, second: str, first: str, mean: float, interval: tuple[float, float],
            p_value: float, seeds: int) -> str:
    """E.g. "test.accuracy: learning_rate=0.003 is better by 0.8 ± 0.5 points (p = 0.01,
    5 seeds)", or "... no difference measurable with 5 seeds"."""
    if p_value >= ALPHA:
        return (f"{metric}: no difference measurable with {seeds} seeds between {second} and "
                f"{first} ({_points(mean)} points, p = {p_value:.2g})")
    half = (interval[1] - interval[0]) / 2
    better, worse = (second, first) if mean > 0 else (first, second)
    return (f"{metric}: {better} is better than {worse} by {abs(mean) * 100:.1f} ± "
            f"{half * 100:.1f} points (p = {p_value:.2g}, {seeds} seeds)")


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def markdown(model: str, summaries: Sequence[Mapping[str, Any]],
             compared: Mapping[str, Any] | None) -> str:
    """The repeat's report: a table per configuration, failures with their reasons, and the
    paired comparison's verdicts."""
    lines = [f"# Seed repeats of {model}", "",
             f"Only {model}'s own randomness changes (init, batch order, dropout, augmentation); "
             f"the split is fixed. Intervals are {LEVEL:.0%} t-intervals of the mean.", ""]
    for found in summaries:
        lines += [f"## {found['label']}: {len(found['seeds'])} seeds "
                  f"({', '.join(map(str, found['seeds'])) or 'none finished'})", ""]
        if "metrics" in found:
            lines += ["| metric | mean | std | min | max | 95% interval of the mean |",
                      "|---|---:|---:|---:|---:|---|"]
            for metric, values in found["metrics"].items():
                std = "-" if values["std"] is None else f"{values['std']:.4f}"
                interval = ("-" if values["interval"] is None else
                            f"[{values['interval'][0]:.4f}, {values['interval'][1]:.4f}]")
                lines.append(f"| {metric} | {values['mean']:.4f} | {std} | {values['min']:.4f} | "
                             f"{values['max']:.4f} | {interval} |")
            lines.append("")
        for seed, why in found["failed"].items():
            lines.append(f"- seed {seed} has no result: {why}")
        if found["failed"]:
            lines.append("")
    if compared is not None:
        lines += ["## Paired comparison (same seeds)", "",
                  *(f"- {line}" for line in compared["verdicts"].values()), ""]
    return "\n".join(lines)
