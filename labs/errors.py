"""Two exception families: the learner's fault (shown with a fix hint) and ours (logged, retried, never charged)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


class LearnerError(Exception):
    """Something the learner can fix. `message` says what is wrong, `hint` how to fix it.

    `http_status` lets the API and the pages answer with the right code without a lookup table.
    """

    http_status = 400

    def __init__(self, message: str, hint: str = "", *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems = list(problems)

    def as_dict(self) -> dict:
        return {"error": self.message, "problems": self.problems, "hint": self.hint}


class SubmissionNotAllowed(LearnerError):
    http_status = 403


class SubmissionLimitReached(LearnerError):
    http_status = 409


class SubmissionTooSoon(LearnerError):
    """Raised during the cooldown; `retry_at` is when the next submission will be accepted."""

    http_status = 429

    def __init__(self, message: str, hint: str = "", *, retry_at: datetime, retry_in_seconds: int) -> None:
        super().__init__(message, hint)
        self.retry_at = retry_at
        self.retry_in_seconds = retry_in_seconds

    def as_dict(self) -> dict:
        return {**super().as_dict(), "retry_at": self.retry_at.isoformat(), "retry_in_seconds": self.retry_in_seconds}


class PlatformError(Exception):
    """Our fault: logged, retried where that makes sense, never charged to the learner."""
