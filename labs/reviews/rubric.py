"""The `review:` block of lab.yaml: the rubric a reviewer scores, and whether approval is required.

```yaml
review:
  required: true              # true (default), optional or false; see "The review loop" in docs/authoring.md
  weight: 0.4                 # share of the final grade from the rubric, 0 to 1; default 0.5 (0 when false)
  min_autograde: 60           # % of the autograde a revision needs before it is reviewed; default 0
  rubric:                     # optional, default: one criterion "Overall quality" worth 10 points
    - id: readability         # unique in the lab, [a-z0-9][a-z0-9_-]*
      title: Readable code    # required
      description: optional guidance shown to the reviewer and the learner
      points: 5               # required, > 0, at most two decimal places
```

A lab without a `review:` block (or without `rubric:`) gets the default rubric, so every lab can be reviewed.
`parse_review` / `parse_rubric` return problems as strings that name the offending key; the lab.yaml loader
turns them into CourseProblems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from labs.errors import PlatformError

CRITERION_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CRITERION_FIELDS = ("id", "title", "description", "points")
REVIEW_FIELDS = ("rubric", "required", "weight", "min_autograde")
# `required:` as written in lab.yaml -> the mode the loop follows.
REVIEW_MODES = {True: "required", "optional": "optional", False: "off"}
DEFAULT_WEIGHT = Decimal("0.5")
MAX_CRITERIA = 30
MAX_POINTS = Decimal(1000)


@dataclass(frozen=True)
class Criterion:
    id: str
    title: str
    points: Decimal
    description: str = ""


@dataclass(frozen=True)
class ReviewSpec:
    criteria: tuple[Criterion, ...]
    mode: str = "required"  # "required" | "optional" | "off"
    weight: Decimal = DEFAULT_WEIGHT  # share of the final grade from the rubric (0 when mode is "off")
    min_autograde: Decimal = Decimal(0)  # % of the autograde needed before review
    is_default_rubric: bool = False

    @property
    def required(self) -> bool:
        return self.mode == "required"

    @property
    def reviewed(self) -> bool:
        """Whether revisions of this lab enter the review queue at all."""
        return self.mode != "off"

    @property
    def max_total(self) -> Decimal:
        return sum((c.points for c in self.criteria), Decimal(0))


DEFAULT_CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        id="overall",
        title="Overall quality",
        points=Decimal(10),
        description="How well the submission meets the lab's goals: correctness, clarity and care.",
    ),
)


def parse_review(raw: Any) -> tuple[ReviewSpec, list[str]]:
    """Parse the `review:` mapping of lab.yaml (None when absent). Always returns a usable spec; the problems
    say what to fix. With problems, the spec falls back to the default rubric."""
    if raw is None:
        return ReviewSpec(criteria=DEFAULT_CRITERIA, is_default_rubric=True), []
    if not isinstance(raw, dict):
        return ReviewSpec(criteria=DEFAULT_CRITERIA, is_default_rubric=True), [
            f"review: must be a mapping with `rubric` and `required`, got {_kind(raw)}."
        ]
    problems = [
        f"review.{key}: unknown key; allowed keys are {', '.join(REVIEW_FIELDS)}."
        for key in raw
        if key not in REVIEW_FIELDS
    ]
    mode = _mode(raw.get("required", True), problems)
    weight = _fraction(raw, "weight", DEFAULT_WEIGHT if mode != "off" else Decimal(0), Decimal(1), problems)
    if mode == "off" and weight:
        problems.append("review.weight: a lab with `required: false` has no review, so its weight must be 0.")
        weight = Decimal(0)
    min_autograde = _fraction(raw, "min_autograde", Decimal(0), Decimal(100), problems)
    settings_ = {"mode": mode, "weight": weight, "min_autograde": min_autograde}
    if "rubric" not in raw or raw["rubric"] is None:
        return ReviewSpec(criteria=DEFAULT_CRITERIA, is_default_rubric=True, **settings_), problems
    criteria, rubric_problems = parse_rubric(raw["rubric"])
    problems.extend(rubric_problems)
    if rubric_problems:
        return ReviewSpec(criteria=DEFAULT_CRITERIA, is_default_rubric=True, **settings_), problems
    return ReviewSpec(criteria=tuple(criteria), **settings_), problems


def _mode(value: Any, problems: list[str]) -> str:
    # `yes`/`no` arrive as booleans from YAML; "optional" is the one word accepted.
    if isinstance(value, bool) or value == "optional":
        return REVIEW_MODES[value]
    problems.append(f"review.required: must be true, false or optional, got {value!r}.")
    return "required"


def _fraction(raw: dict, key: str, default: Decimal, maximum: Decimal, problems: list[str]) -> Decimal:
    if key not in raw or raw[key] is None:
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"review.{key}: must be a number from 0 to {maximum}, got {value!r}.")
        return default
    number = Decimal(str(value))
    if not number.is_finite() or number < 0 or number > maximum:
        problems.append(f"review.{key}: must be from 0 to {maximum}, got {value!r}.")
        return default
    if number.as_tuple().exponent < -2:
        problems.append(f"review.{key}: at most two decimal places, got {value!r}.")
        return default
    return number


def parse_rubric(raw: Any) -> tuple[list[Criterion], list[str]]:
    """Parse `review.rubric`, a list of criteria. Returns every valid criterion and every problem found."""
    if not isinstance(raw, list):
        return [], [f"review.rubric: must be a list of criteria, got {_kind(raw)}."]
    if not raw:
        return [], ["review.rubric: is empty; list at least one criterion, or remove `rubric` to use the default."]
    problems: list[str] = []
    if len(raw) > MAX_CRITERIA:
        problems.append(f"review.rubric: has {len(raw)} criteria; at most {MAX_CRITERIA} are allowed.")
    criteria: list[Criterion] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw):
        where = f"review.rubric[{index}]"
        criterion = _criterion(entry, where, problems)
        if criterion is None:
            continue
        if criterion.id in seen:
            problems.append(
                f"{where}.id: duplicate id {criterion.id!r} (also review.rubric[{seen[criterion.id]}]); "
                "give each criterion its own id."
            )
            continue
        seen[criterion.id] = index
        criteria.append(criterion)
    return criteria, problems


def review_spec_for_lab(lab: Any) -> ReviewSpec:
    """The review settings of a stored lab. The importer validated them, so a problem here is ours."""
    spec, problems = parse_review((lab.spec or {}).get("review"))
    if problems:
        raise PlatformError(
            f"lab {lab.pk} ({lab.slug}) has an invalid review block: {' '.join(problems)} "
            "Fix lab.yaml and import the course again."
        )
    return spec


def _criterion(entry: Any, where: str, problems: list[str]) -> Criterion | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be a mapping with id, title and points, got {_kind(entry)}.")
        return None
    before = len(problems)
    for key in entry:
        if key not in CRITERION_FIELDS:
            problems.append(f"{where}.{key}: unknown key; allowed keys are {', '.join(CRITERION_FIELDS)}.")
    criterion_id = entry.get("id")
    if not isinstance(criterion_id, str) or not criterion_id.strip():
        problems.append(f"{where}.id: missing; give the criterion a short id such as `readability`.")
    elif not CRITERION_ID_RE.match(criterion_id):
        problems.append(
            f"{where}.id: {criterion_id!r} is not a valid id; use lower-case letters, digits, - and _ "
            "(at most 64 characters)."
        )
    title = entry.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append(f"{where}.title: missing; every criterion needs a title the reviewer and learner read.")
    description = entry.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        problems.append(f"{where}.description: must be text, got {_kind(description)}.")
    points = _points(entry.get("points"), where, problems)
    if len(problems) > before:
        return None
    return Criterion(id=criterion_id, title=title.strip(), points=points, description=description.strip())


def _points(value: Any, where: str, problems: list[str]) -> Decimal:
    if value is None:
        problems.append(f"{where}.points: missing; say how many points the criterion is worth, e.g. `points: 5`.")
        return Decimal(0)
    # YAML turns `yes` into True, and True is an int in Python: refuse it explicitly.
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        problems.append(f"{where}.points: must be a number, got {value!r}.")
        return Decimal(0)
    try:
        points = Decimal(str(value))
    except InvalidOperation:
        problems.append(f"{where}.points: must be a number, got {value!r}.")
        return Decimal(0)
    if not points.is_finite() or points <= 0:
        problems.append(f"{where}.points: must be greater than 0, got {value!r}.")
    elif points > MAX_POINTS:
        problems.append(f"{where}.points: must be at most {MAX_POINTS}, got {value!r}.")
    elif points.as_tuple().exponent < -2:
        problems.append(f"{where}.points: at most two decimal places, got {value!r}.")
    return points


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(type(value), type(value).__name__)
