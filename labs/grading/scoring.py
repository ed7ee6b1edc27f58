"""Scores: one computation, used by the worker when it stores a verdict and by every page and the API.

A score is the sum of the results' points over the sum of their maxima. Every declared check counts towards
the maximum, including one that could not decide because of the submission: leaving it out would let a
submission that breaks everything score full marks on what is left. Scores are numbers (floats, rounded to
two decimals) everywhere: in `Revision.scores_by_category`, on pages and in the API.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from labs.checks.base import CATEGORIES


class Scored(Protocol):
    category: str
    points: Decimal | float
    max_points: Decimal | float


@dataclass(frozen=True)
class CategoryScore:
    score: float
    max: float


@dataclass(frozen=True)
class Score:
    points: float
    max_points: float
    by_category: dict[str, CategoryScore] = field(default_factory=dict)

    def by_category_json(self) -> dict[str, dict[str, float]]:
        return {name: {"score": c.score, "max": c.max} for name, c in self.by_category.items()}


def score_results(results: Iterable[Scored]) -> Score:
    """The score of `results` (the ones a viewer may see, or all of them), categories in the documented order."""
    points = max_points = Decimal(0)
    sums: dict[str, list[Decimal]] = {}
    for result in results:
        got, most = Decimal(str(result.points)), Decimal(str(result.max_points))
        points += got
        max_points += most
        entry = sums.setdefault(result.category, [Decimal(0), Decimal(0)])
        entry[0] += got
        entry[1] += most
    order = [*CATEGORIES, *sorted(set(sums) - set(CATEGORIES))]
    return Score(
        points=_number(points),
        max_points=_number(max_points),
        by_category={
            name: CategoryScore(_number(sums[name][0]), _number(sums[name][1])) for name in order if name in sums
        },
    )


def category_scores_json(stored: object) -> dict[str, dict[str, float]]:
    """`Revision.scores_by_category` as numbers, whatever an earlier version stored (strings, ints)."""
    if not isinstance(stored, dict):
        return {}
    out = {}
    for name, entry in stored.items():
        if isinstance(entry, dict):
            out[str(name)] = {"score": _number(entry.get("score")), "max": _number(entry.get("max"))}
    return out


def _number(value: object) -> float:
    try:
        return round(float(Decimal(str(value))), 2)
    except (ArithmeticError, ValueError, TypeError):
        return 0.0
