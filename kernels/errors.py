"""The two families, as everywhere on the platform: what the learner can fix, and what is ours.

A `CellRefused` goes back to the page as {"error": code, "message": …} with its HTTP status: it names what is wrong
and what to do. A `KernelServiceError` is ours: logged, and the page says to try again; the learner's code never
counts it against them.
"""

from __future__ import annotations


class CellRefused(Exception):
    """A request the page gets an answer for instead of an execution: the learner's or a limit's doing."""

    def __init__(self, code: str, message: str, *, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class KernelServiceError(Exception):
    """Our side failed: Docker, Redis, the kernel manager. Logged and retried by the learner; never theirs."""
