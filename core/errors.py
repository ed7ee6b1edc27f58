"""The two exception families. Every app subclasses these; nothing raises them bare across an app boundary.

- `LearnerError`: something the person using the platform (a learner, or an instructor writing a course) did and
  can fix. `message` says what is wrong, `hint` how to fix it; `problems` lists every problem when there are
  several. Shown to that person; never retried; `http_status` is what the API and pages answer with.
- `PlatformError`: our fault (a worker, Docker, storage, a grader bug). Logged with details for staff, retried
  where that makes sense, never charged to a learner and never shown to one beyond a generic sentence.
"""

from __future__ import annotations

from collections.abc import Sequence


class LearnerError(Exception):
    http_status = 400

    def __init__(self, message: str, hint: str = "", *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems = list(problems)

    def as_dict(self) -> dict:
        return {"error": self.message, "problems": self.problems, "hint": self.hint}


class PlatformError(Exception):
    """Our fault: logged, retried where that makes sense, never charged to the learner."""
