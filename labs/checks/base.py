"""Check framework. A check is a class registered by kind; it turns what a sandbox observed into an outcome.

STUB written by the lead so the course loader and check authors share one interface; the grading-engine
owner fleshes it out (GradingContext, evidence bounds) without changing these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

CATEGORIES = ("reproducibility", "resilience", "observability", "correctness")
STATUSES = ("pass", "fail", "error", "skipped")


@dataclass
class CheckOutcome:
    status: str  # one of STATUSES
    message: str  # what was observed and what was expected
    points: float = 0.0
    hint: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


class Check:
    kind: ClassVar[str]
    default_category: ClassVar[str] = "correctness"

    def __init__(self, *, check_id: str, args: dict[str, Any], points: float) -> None:
        self.check_id = check_id
        self.args = args
        self.points = points

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        """Problems with this kind's arguments, each a sentence saying what is wrong and how to fix it."""
        return []

    def run(self, ctx: Any) -> CheckOutcome:
        raise NotImplementedError


CHECK_KINDS: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    if cls.kind in CHECK_KINDS:
        raise ValueError(f"check kind {cls.kind!r} is registered twice")
    CHECK_KINDS[cls.kind] = cls
    return cls


def validate_check_spec(kind: str, args: dict[str, Any]) -> list[str]:
    """Problems with a check declared in lab.yaml; an empty list means it is valid."""
    _load_builtin_kinds()
    if kind not in CHECK_KINDS:
        known = ", ".join(sorted(CHECK_KINDS)) or "none registered"
        return [f"unknown check kind {kind!r}; known kinds: {known}"]
    if not isinstance(args, dict):
        return ["args must be a mapping of argument names to values"]
    return CHECK_KINDS[kind].validate_args(args)


def _load_builtin_kinds() -> None:
    # Importing the kind modules registers them; done lazily so importing the registry stays cheap.
    import importlib
    import pkgutil

    import labs.checks as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "base":
            importlib.import_module(f"labs.checks.{module.name}")
