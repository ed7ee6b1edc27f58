"""The labs app's errors: subclasses of the shared families in core.errors (the learner's, with a hint; ours)."""

from __future__ import annotations

from datetime import datetime

from core.errors import LearnerError, PlatformError

__all__ = [
    "LearnerError",
    "PlatformError",
    "SandboxUnavailable",
    "SubmissionLimitReached",
    "SubmissionNotAllowed",
    "SubmissionTooSoon",
]


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


class SandboxUnavailable(PlatformError):
    """Docker is unreachable, the runner image is missing, or a container could not be created."""
