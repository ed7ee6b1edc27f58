"""Check framework. A check is a class registered by kind; it turns what a sandbox observed into an outcome.

Writing a kind (stable API; the generic kinds in generic.py are examples):

    from labs.checks.base import Check, CheckOutcome, GradingContext, register

    @register
    class MyCheck(Check):
        kind = "area.name"                      # what lab.yaml's `kind:` says
        default_category = "correctness"        # used when lab.yaml gives no category

        @classmethod
        def validate_args(cls, args) -> list[str]:
            return [] if "x" in args else ["args.x is required: the ... to check"]

        def run(self, ctx: GradingContext) -> CheckOutcome:
            r = ctx.sandbox.exec(["python", "-c", "..."], user="learner", timeout_s=ctx.timeout_s(10))
            if r.timed_out:
                return CheckOutcome("fail", f"... did not finish within {r.duration_s:.0f} s", hint="...")
            return self.passed("observed ..., as expected")

Rules the orchestrator enforces or relies on:
- `run` returns a CheckOutcome with status pass | fail | error | skipped. A check that cannot decide returns
  `error` with the reason (never `pass`). `points` is clamped to 0..self.points; `passed()` gives full points.
- An exception escaping `run` becomes status `error` with a generic message (details logged for staff); the
  other checks still run. Raise labs.sandbox.SandboxUnavailable (a PlatformError) only when the platform
  itself is broken: that aborts the whole run, which is retried and never charged to the learner.
- Submission code runs only as user "learner"; anything it prints is data. A verdict may rely on exit codes
  and docker's observations, on trusted programs in platform/sandbox run as user "grader", or (pytest) on
  nonce-framed lines. Pass output through `ctx.evidence_text` before storing it.
- `ctx.fresh_sandbox()` gives a second container (same limits, same submission) for checks that need a
  clean one or a peer joined to the first one's network namespace (`network_mode=f"container:{id}"`).
- A kind with `runs_alone = True` may run in a thread of its own, at the same time as other checks, in a sandbox
  of its own (labs.grading.schedule): it must not rely on anything another check left in /work, nor share
  mutable state between instances beyond what is safe across threads.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from labs.sandbox import Sandbox, SandboxLimits

CATEGORIES = ("reproducibility", "resilience", "observability", "correctness")
STATUSES = ("pass", "fail", "error", "skipped")
EVIDENCE_TEXT_LIMIT = 4000  # characters per evidence field the page shows
# What the grader's own parts get at least (GradingContext.grader_sandbox), whatever the lab's limits.
GRADER_PART = {"memory_mb": 1024, "pids": 256, "scratch_mb": 1024, "scratch_inodes": 65536}


@dataclass
class CheckOutcome:
    status: str  # one of STATUSES
    message: str  # what was observed and what was expected
    points: float = 0.0
    hint: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")


@dataclass
class GradingContext:
    """Everything a check may use while a revision is graded."""

    sandbox: Sandbox
    submission_dir: Path  # host path, read-only content-addressed tree
    grader_dir: Path  # host path of the lab's grader bundle
    limits: SandboxLimits
    course_slug: str = ""
    revision_id: int | None = None
    run_id: int | None = None
    deadline: float = field(default=0.0)  # time.monotonic() when the run's wall budget ends
    sandbox_labels: dict[str, str] = field(default_factory=dict)  # extra labels for fresh_sandbox()

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic()) if self.deadline else float(self.limits.wall_seconds)

    def timeout_s(self, wanted: float) -> float:
        """A command timeout no longer than what is left of the run's wall budget."""
        return max(0.1, min(float(wanted), self.remaining_s()))

    @contextlib.contextmanager
    def fresh_sandbox(self, *, network_mode: str = "none", copy_submission: bool = True) -> Iterator[Sandbox]:
        """A second sandbox with the same limits and mounts; always removed when the block ends."""
        from labs.sandbox import Sandbox

        box = Sandbox(
            limits=self.limits,
            submission_dir=self.submission_dir,
            grader_dir=self.grader_dir,
            revision_id=self.revision_id,
            run_id=self.run_id,
            network_mode=network_mode,
            copy_submission=copy_submission,
            labels=self.sandbox_labels,
        )
        with box:
            yield box
        # Limits a learner hit in the second sandbox count for the run too.
        self.sandbox.limit_events.extend(box.limit_events)

    @contextlib.contextmanager
    def grader_sandbox(self, *, copy_submission: bool = True) -> Iterator[Sandbox]:
        """A sandbox for the grader's own heavy parts (an offline install of the learner's lock, say), with room
        of its own: the lab's limits raised to GRADER_PART (clamped to the platform maxima), so a correct
        submission never fails for lack of space or memory the lab did not promise it. No learner code should
        run in it; limits hit there are not the learner's and are not added to the run's."""
        from django.conf import settings

        from labs.sandbox import Sandbox, SandboxLimits

        limits = SandboxLimits(
            cpus=self.limits.cpus,
            memory_mb=min(max(self.limits.memory_mb, GRADER_PART["memory_mb"]), settings.GRADING_MAX_MEMORY_MB),
            wall_seconds=self.limits.wall_seconds,
            pids=min(max(self.limits.pids, GRADER_PART["pids"]), settings.GRADING_MAX_PIDS),
            output_bytes=self.limits.output_bytes,
            scratch_mb=min(max(self.limits.scratch_mb, GRADER_PART["scratch_mb"]), settings.GRADING_MAX_SCRATCH_MB),
            scratch_inodes=max(self.limits.scratch_inodes, GRADER_PART["scratch_inodes"]),
        )
        with Sandbox(
            limits=limits,
            submission_dir=self.submission_dir,
            grader_dir=self.grader_dir,
            revision_id=self.revision_id,
            run_id=self.run_id,
            copy_submission=copy_submission,
            labels=self.sandbox_labels,
        ) as box:
            yield box

    def lesson_url(self, ref: str) -> str:
        """URL of a `lesson:` reference `unit-slug/lesson-slug#anchor` (empty when there is no course)."""
        if not ref or not self.course_slug:
            return ""
        path, _, anchor = ref.partition("#")
        unit, _, lesson = path.strip("/").partition("/")
        if not unit or not lesson:
            return ""
        url = f"/courses/{self.course_slug}/{unit}/{lesson}/"
        return f"{url}#{anchor}" if anchor else url

    @staticmethod
    def evidence_text(data: bytes | str, limit: int = EVIDENCE_TEXT_LIMIT) -> str:
        """Untrusted output made safe to store and show: cleaned and capped (see labs.sandbox.clean_output)."""
        from labs.sandbox import clean_output

        return clean_output(data, limit=limit)


class Check:
    kind: ClassVar[str]
    default_category: ClassVar[str] = "correctness"
    # True when the kind reads the lab's hidden grader/ folder; validate_course then requires one.
    needs_grader: ClassVar[bool] = False
    # True when a run needs nothing an earlier check left in /work and leaves nothing a later one needs (it starts
    # its own service, writes to a folder of its own): the orchestrator may then run it concurrently with other
    # checks, in a sandbox of its own with the lab's limits (labs.grading.schedule). False keeps it in the lab's
    # order in the run's main sandbox, after the checks before it: right for commands that may build on each
    # other, and cheapest for checks that only read the submission's files.
    runs_alone: ClassVar[bool] = False
    # Roughly how long one run takes on an idle machine, in seconds: only orders concurrent checks (longest first,
    # so the longest does not start last). Never a limit.
    expected_s: ClassVar[float] = 1.0

    def __init__(self, *, check_id: str, args: dict[str, Any], points: float) -> None:
        self.check_id = check_id
        self.args = args
        self.points = points

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        """Problems with this kind's arguments, each a sentence saying what is wrong and how to fix it."""
        return []

    def run(self, ctx: GradingContext) -> CheckOutcome:
        raise NotImplementedError

    # Helpers so kinds read the same way.
    def passed(self, message: str, **evidence: Any) -> CheckOutcome:
        return CheckOutcome("pass", message, points=self.points, evidence=evidence)

    def failed(self, message: str, *, hint: str = "", points: float = 0.0, **evidence: Any) -> CheckOutcome:
        return CheckOutcome("fail", message, points=points, hint=hint, evidence=evidence)

    def undecided(self, message: str, **evidence: Any) -> CheckOutcome:
        return CheckOutcome("error", message, evidence=evidence)


CHECK_KINDS: dict[str, type[Check]] = {}  # filled by @register; read it through check_kind() / check_kinds()


def register(cls: type[Check]) -> type[Check]:
    if cls.kind in CHECK_KINDS:
        raise ValueError(f"check kind {cls.kind!r} is registered twice")
    CHECK_KINDS[cls.kind] = cls
    return cls


def check_kinds() -> dict[str, type[Check]]:
    """Every registered kind by name (the built-in ones are loaded first)."""
    _load_builtin_kinds()
    return dict(CHECK_KINDS)


def check_kind(kind: str) -> type[Check] | None:
    """The registered class for `kind`, or None when no kind has that name."""
    _load_builtin_kinds()
    return CHECK_KINDS.get(kind)


def validate_check_spec(kind: str, args: dict[str, Any]) -> list[str]:
    """Problems with a check declared in lab.yaml; an empty list means it is valid."""
    cls = check_kind(kind)
    if cls is None:
        known = ", ".join(sorted(check_kinds())) or "none registered"
        return [f"unknown check kind {kind!r}; known kinds: {known}"]
    if not isinstance(args, dict):
        return ["args must be a mapping of argument names to values"]
    return cls.validate_args(args)


_BUILTIN_LOADED = False


def _load_builtin_kinds() -> None:
    # Importing the kind modules (this module's siblings) registers them; done lazily so importing the
    # registry stays cheap. By file name rather than through the package, which imports nothing.
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name != "base":
            importlib.import_module(f"{__package__}.{module.name}")
    _BUILTIN_LOADED = True
