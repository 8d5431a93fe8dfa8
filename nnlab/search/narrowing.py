"""The tutorials' method as an Optuna sampler: round 1 samples at random; each later round samples
from the ranges narrowed to the top quarter of the trials completed so far."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nnlab.search.space import Range, _round, decode, distribution, from_distribution

TOP_FRACTION = 0.25  # the share of completed trials that narrows the next round's ranges


MIN_WIDTH = 0.25  # a narrowed range keeps at least this share of the old width


def top_quarter(trials: Sequence[FrozenTrial], maximize: bool = True) -> list[FrozenTrial]:
    """The best TOP_FRACTION of the COMPLETE trials (at least one, if any completed)."""
    done = [trial for trial in trials if trial.state == TrialState.COMPLETE
            and trial.value is not None]
    done.sort(key=lambda t: (-(t.value or 0.0) if maximize else (t.value or 0.0), t.number))
    return done[: max(1, math.ceil(len(done) * TOP_FRACTION))] if done else []


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
        return Range(item.key, item.kind, new_low, max(new_high, new_low * (1 + 1e-9)))
    low, high = _narrow_interval(item.low, item.high, [float(v) for v in best])
    if item.kind == "int":
        low, high = math.floor(low + 1e-9), math.ceil(high - 1e-9)
        return Range(item.key, "int", float(low), float(max(high, low + 1)))
    return Range(item.key, item.kind, max(_round(low), item.low), min(_round(high), item.high))


def narrowed_ranges(ranges: Sequence[Range], trials: Sequence[FrozenTrial],
                    maximize: bool = True) -> list[Range]:
    """Every range narrowed around the top quarter of `trials` (unchanged if none completed).
    Values come from the trials' params, so a choice's YAML text is decoded by Range."""
    best = top_quarter(trials, maximize)
    if not best:
        return list(ranges)
    narrowed = []
    for item in ranges:
        used = [decode(trial.params[item.key]) for trial in best if item.key in trial.params]
        narrowed.append(narrow(item, used) if used else item)
    return narrowed


class NarrowingSampler(BaseSampler):
    """Random search in `rounds` rounds of `round_size` finished trials each: round 1 draws
    from the study's ranges, round k from the ranges narrowed to the top quarter of every
    trial completed before it started. Parallel workers share the rounds through the study."""

    def __init__(self, rounds: int, round_size: int, seed: int | None = None) -> None:
        self.rounds = max(1, rounds)
        self.round_size = max(1, round_size)
        self._random = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def round_of(self, study: Study) -> int:
        """The round that a trial asked for now belongs to: 1 + finished trials // size."""
        finished = study.get_trials(deepcopy=False,
                                    states=(TrialState.COMPLETE, TrialState.PRUNED))
        return min(self.rounds, 1 + len(finished) // self.round_size)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        round_number = self.round_of(study)
        if round_number > 1:
            # The round's ranges are fixed: narrowed around the trials of earlier rounds only
            # (the first (round - 1) x size finished ones), as the source tutorials' rounds were.
            finished = sorted(study.get_trials(deepcopy=False, states=(
                TrialState.COMPLETE, TrialState.PRUNED)), key=lambda t: t.number)
            done = finished[: (round_number - 1) * self.round_size]
            item = from_distribution(param_name, param_distribution)
            narrowed = narrowed_ranges([item], done,
                                       study.direction == StudyDirection.MAXIMIZE)[0]
            if narrowed != item:
                return self._random.sample_independent(study, trial, param_name,
                                                        distribution(narrowed))
        return self._random.sample_independent(study, trial, param_name, param_distribution)
