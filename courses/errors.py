"""Two exception families: the learner's (or author's) fault, shown with a fix hint, and ours (logged, retried)."""

from __future__ import annotations

from dataclasses import dataclass


class LearnerError(Exception):
    """Something the person using the platform can fix; the message says what is wrong, the hint how to fix it."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class PlatformError(Exception):
    """Our fault (storage, database, a bug): logged and retried, never charged to a learner."""


@dataclass(frozen=True)
class CourseProblem:
    """One problem found in a course directory.

    `file` is relative to the course directory (posix separators), `line` is 1-based or None when the problem
    is about a whole file or folder.
    """

    file: str
    line: int | None
    message: str
    hint: str

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message} (hint: {self.hint})" if self.hint else f"{where}: {self.message}"


class CourseInvalid(LearnerError):
    """A course directory that does not validate; carries every problem found."""

    def __init__(self, problems: list[CourseProblem]) -> None:
        super().__init__(
            f"the course has {len(problems)} problem(s)",
            hint="run `python manage.py validate_course DIR` and fix each problem it lists",
        )
        self.problems = problems
