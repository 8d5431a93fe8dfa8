"""The seeds' method: each round's ranges narrowed to the top quarter of the trials so far."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from nnlab.search.space import Range, _round
from nnlab.search.trials import SweepError, Trial, rank

TOP_FRACTION = 0.25  # the share of successful trials that narrows the next round's ranges


MIN_WIDTH = 0.25  # a narrowed range keeps at least this share of the old width


def top_quarter(trials: Sequence[Trial]) -> list[Trial]:
    """The best TOP_FRACTION of the successful trials (at least one, if any succeeded)."""
    scored = [trial for trial in rank(trials) if trial.score is not None]
    return scored[: max(1, math.ceil(len(scored) * TOP_FRACTION))] if scored else []


def _narrow_interval(low: float, high: float, best: Sequence[float]) -> tuple[float, float]:
    """The smallest interval inside [low, high] that holds every `best` value and keeps at
    least MIN_WIDTH of the old width (so one lucky trial does not collapse the range)."""
    width = max(max(best) - min(best), (high - low) * MIN_WIDTH)
    center = (max(best) + min(best)) / 2
    new_low = min(max(center - width / 2, low), high - width)  # shift inside, keep the width
    return new_low, new_low + width


def narrow(item: Range, best: Sequence[Any]) -> Range:
    """The range that the values of the best trials suggest for the next round.

    uniform: around the best values; loguniform: the same in log space; int: widened to whole
    numbers; choice: the values the best trials used, in their original order.
    """
    if not best:
        raise ValueError(f"narrow {item.key}: needs the values of at least one trial")
    if item.kind == "choice":
        return Range(item.key, "choice", values=tuple(v for v in item.values if v in best))
    if item.kind == "loguniform":
        low, high = _narrow_interval(
            math.log(item.low), math.log(item.high), [math.log(float(v)) for v in best]
        )
        new_low = max(_round(math.exp(low)), item.low)
        new_high = min(_round(math.exp(high)), item.high)
        return Range(item.key, item.kind, new_low, new_high)
    low, high = _narrow_interval(item.low, item.high, [float(v) for v in best])
    if item.kind == "int":
        low, high = math.floor(low + 1e-9), math.ceil(high - 1e-9)
        return Range(item.key, "int", float(low), float(max(high, low + 1)))
    return Range(item.key, item.kind, max(_round(low), item.low), min(_round(high), item.high))


def narrow_all(ranges: Sequence[Range], trials: Sequence[Trial]) -> list[Range]:
    """Every range narrowed around the top quarter of `trials`.

    Raises:
        SweepError: no trial succeeded, so there is nothing to narrow around.
    """
    best = top_quarter(trials)
    if not best:
        raise SweepError("no trial succeeded, so the ranges cannot be narrowed")
    return [narrow(item, [trial.values[item.key] for trial in best]) for item in ranges]
