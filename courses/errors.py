"""The courses app's errors: the shared families (core.errors) and the course validator's problems."""

from __future__ import annotations

from core.errors import LearnerError, PlatformError
from core.yamlsrc import CourseProblem

__all__ = ["CourseInvalid", "CourseProblem", "LearnerError", "PlatformError"]


class CourseInvalid(LearnerError):
    """A course directory that does not validate; carries every problem found."""

    def __init__(self, problems: list[CourseProblem]) -> None:
        super().__init__(
            f"the course has {len(problems)} problem(s)",
            hint="run `python manage.py validate_course DIR` and fix each problem it lists",
        )
        self.problems: list[CourseProblem] = problems  # type: ignore[assignment]

    def as_dict(self) -> dict:
        return {"error": self.message, "problems": [p.format() for p in self.problems], "hint": self.hint}
