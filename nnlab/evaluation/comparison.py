"""Which models differ by more than chance, image by image: every pair on the test set, and the
best model by validation against every other, each with an exact McNemar test on the images
only one of the two gets right, Holm-corrected across the family of pairs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np

from nnlab.evaluation.outcomes import Outcomes, same_images
from nnlab.evaluation.uncertainty import ALPHA, holm, mcnemar


@dataclass(frozen=True)
class Pair:
    """Two models on the same images: how many only `first` got right, only `second`, the
    exact McNemar p-value and the Holm-adjusted one (across the pairs it was compared with)."""

    first: str
    second: str
    only_first: int
    only_second: int
    p_value: float
    p_holm: float

    @property
    def differs(self) -> bool:
        return self.p_holm < ALPHA

    @property
    def better(self) -> str | None:
        """The model that got more images right, when the difference is measurable."""
        if not self.differs:
            return None
        return self.first if self.only_first > self.only_second else self.second

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "differs": self.differs, "better": self.better}


@dataclass(frozen=True)
class Best:
    """The best model by validation accuracy, the models validation cannot tell apart from it,
    and the comparisons that say so."""

    model: str
    tied_with: list[str]
    pairs: list[Pair]

    def verdict(self, accuracy: float) -> str:
        """The report's sentence, in plain words."""
        lead = f"Best by validation accuracy: **{self.model}** ({accuracy:.4f})"
        if not self.pairs:
            return f"{lead}, the only model. Test metrics are reported, never used to choose."
        if self.tied_with:
            beaten = [pair.second for pair in self.pairs if pair.differs]
            names = _listed(self.tied_with)
            return (f"{lead}, but it is a **tie**: validation cannot tell it apart from {names} "
                    f"(exact McNemar test, Holm-corrected p >= {ALPHA:g}): these images don't "
                    "say which is better. More validation images or seed repeats "
                    "(`nnlab repeat`) can separate them."
                    + (f" It is better than {_listed(beaten)}." if beaten else "")
                    + " Test metrics are reported, never used to choose.")
        return (f"{lead}, better on validation than every other model (exact McNemar test, "
                f"Holm-corrected p < {ALPHA:g}). Test metrics are reported, never used to "
                "choose.")

    def as_dict(self) -> dict[str, object]:
        return {"model": self.model, "tie": bool(self.tied_with), "tied_with": self.tied_with,
                "pairs": [pair.as_dict() for pair in self.pairs]}


def compare(first: str, second: str, outcomes: dict[str, Outcomes]) -> tuple[int, int, float]:
    """Images only `first` got right, only `second` did, and McNemar's exact p-value.

    Raises:
        ValueError: the two were scored on different images (a stale evaluation).
    """
    if not same_images(outcomes[first], outcomes[second]):
        raise ValueError(f"{first} and {second} were evaluated on different images "
                         f"({outcomes[first].labels.size} and {outcomes[second].labels.size}); "
                         "run `dvc repro` to evaluate both on the current split")
    right_first, right_second = outcomes[first].right, outcomes[second].right
    only_first = int(np.sum(right_first & ~right_second))
    only_second = int(np.sum(~right_first & right_second))
    return only_first, only_second, mcnemar(only_first, only_second)


def all_pairs(outcomes: dict[str, Outcomes]) -> list[Pair]:
    """Every pair of models (in the given order), Holm-corrected across all of them."""
    return _corrected(outcomes, list(combinations(outcomes, 2)))


def best_by_validation(outcomes: dict[str, Outcomes]) -> Best:
    """The model with the most validation images right (the first of equals, in the given
    order) and every model that validation cannot tell apart from it: the best against each
    other, Holm-corrected across those comparisons."""
    if not outcomes:
        raise ValueError("no model to compare")
    best = max(outcomes, key=lambda name: int(outcomes[name].right.sum()))
    pairs = _corrected(outcomes, [(best, other) for other in outcomes if other != best])
    return Best(best, [pair.second for pair in pairs if not pair.differs], pairs)


def _corrected(outcomes: dict[str, Outcomes], names: list[tuple[str, str]]) -> list[Pair]:
    """The pairs `names`, each tested, Holm-corrected as one family."""
    found = [(first, second, *compare(first, second, outcomes)) for first, second in names]
    adjusted = holm([p_value for *_, p_value in found])
    return [Pair(*row, p_holm=p) for row, p in zip(found, adjusted, strict=True)]


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
