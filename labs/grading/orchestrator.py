"""Grade one revision: the director. Each step is one function; the state it changes is owned elsewhere.

    grade_revision ─▶ claim ─▶ prepare ─▶ open sandbox ─▶ run each check ─▶ our failures? ─▶ store verdict
                      (state)  (RunState)  (labs.sandbox)  (labs.checks)                    (scoring, state)

Verdicts: `graded` (score computed), `failed` (a learner command hit a limit that stopped it: timeout or out of
memory; the partial score is still stored and the page says which limit), or our error (requeued with backoff by
`labs.grading.state.revision_error`, then `error` after MAX_ERRORS).

Not in charge of: transitions and row writes (labs.grading.state), scores (labs.grading.scoring), containers
(labs.sandbox), what a check observes (labs.checks), Celery (labs.tasks).

Attribution: a check ends `pass`, `fail` (the submission's doing, with the cause named) or `error` (ours only).
An `error` is never scored: like a check that crashed or was misconfigured, it makes the whole run a platform
error, retried with a backoff; if it persists the revision waits in `error` ("needs attention") for staff.

Hidden checks run in a sandbox of their own, so nothing the submission does while one runs (files it writes, the
hidden tests it reads) reaches a later visible check; their log is stored apart from the visible log.

Independent checks run at the same time (labs.grading.schedule, at most GRADING_PARALLEL_CHECKS at once): a hidden
check, or one whose kind `runs_alone`, in a sandbox of its own with the lab's full limits; the others in the lab's
order in the main sandbox. Checks decide in their threads; everything written to the database (progress, each
result as it ends) is written here, on the calling thread, and results, logs and limits are kept in the lab's
order whatever order the checks ended in. Limits the learner hit in a sandbox of its own count for the run like
those of the main sandbox (visible checks) or like a hidden check's (hidden ones).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import connection

from labs.bundles import grader_materialize
from labs.checks.base import CheckOutcome, GradingContext, check_kind
from labs.errors import PlatformError
from labs.grading import state as grading_state
from labs.grading.schedule import own_sandbox, plan_checks, run_checks
from labs.grading.scoring import score_results
from labs.labspec import CheckSpec, LabSpec
from labs.models import CheckResult, GradingRun, Revision
from labs.sandbox import LimitEvent, Sandbox, SandboxLimits, clean_output
from labs.sandbox.reaper import database_label
from labs.storage import tree_materialize
from labs.telemetry import grading_run_observe

logger = logging.getLogger(__name__)

LOG_LIMIT = 64 * 1024
ERROR_MESSAGE = "This check could not run because of a problem on our side. It does not count against you."


@dataclass
class RunState:
    """Everything one grading attempt accumulates; one per call, never shared between tasks."""

    revision: Revision
    run: GradingRun
    spec: LabSpec
    limits: SandboxLimits
    submission_dir: Path
    grader_dir: Path
    results: list[CheckResult] = field(default_factory=list)
    log_parts: list[str] = field(default_factory=list)
    hidden_log_parts: list[str] = field(default_factory=list)
    our_failures: list[str] = field(default_factory=list)  # checks that ended in error, crashed or are misconfigured
    resources: dict[str, Any] = field(default_factory=dict)
    failure_reason: str = ""
    failure_message: str = ""


def grade_revision(*, revision_id: int, worker: str = "") -> str | None:
    """Grade `revision_id` if it is still queued; returns the final state, or None if someone else has it.

    Raises PlatformError when our side failed and the revision went back to the queue (the task retries).
    """
    revision = grading_state.revision_claim(revision_id=revision_id)
    if revision is None:
        logger.info("revision %s is not queued any more; nothing to do", revision_id)
        return None
    run = grading_state.run_start(revision=revision, worker=worker)
    try:
        return _grade(revision, run)
    finally:
        grading_run_observe(run=run)  # whatever the run ended as: counted once, read back from the database


def _grade(revision: Revision, run: GradingRun) -> str:
    revision_id = revision.pk
    try:
        state = _prepare(revision, run)
        _grade_in_sandbox(state)
        _raise_our_failures(state)
        return _store_verdict(state)
    except PlatformError as exc:
        logger.warning("grading revision %s failed on our side: %s", revision_id, exc)
        final = grading_state.revision_error(revision=revision, run=run, detail=str(exc))
        if final == Revision.State.QUEUED:
            raise
        return final
    except Exception as exc:
        logger.exception("grading revision %s crashed", revision_id)
        if isinstance(exc, DatabaseError):
            # The database went away under us (a restart, a failover): this connection is dead, and recording the
            # error on it would fail too and leave the revision running until the sweeper's deadline. Reconnect.
            connection.close()
        try:
            final = grading_state.revision_error(revision=revision, run=run, detail=f"{type(exc).__name__}: {exc}")
        except DatabaseError as again:
            # Still unreachable: ours, retried; the sweeper requeues the revision once its deadline passes.
            connection.close()
            raise PlatformError(f"grading crashed and the database is unreachable: {type(again).__name__}") from exc
        if final == Revision.State.QUEUED:
            raise PlatformError(f"grading crashed: {type(exc).__name__}") from exc
        return final


def _prepare(revision: Revision, run: GradingRun) -> RunState:
    lab = revision.lab
    # This host's copies, verified against the database and written from it when missing or changed (the worker
    # may run on another host than the one the files were submitted or imported on). PlatformError if it cannot.
    return RunState(
        revision=revision,
        run=run,
        spec=lab.labspec,
        limits=lab.labspec.limits.sandbox_limits(),
        submission_dir=tree_materialize(tree_sha256=revision.tree_sha256),
        grader_dir=grader_materialize(digest=lab.grader_digest),
    )


def _sandbox(state: RunState, labels: dict[str, str]) -> Sandbox:
    """A sandbox for this run: the lab's limits, the submission and the grader bundle."""
    return Sandbox(
        limits=state.limits,
        submission_dir=state.submission_dir,
        grader_dir=state.grader_dir,
        revision_id=state.revision.pk,
        run_id=state.run.pk,
        labels=labels,
    )


@dataclass
class _Ran:
    """What one check concluded, computed in whichever thread ran it; stored by _store_check on the calling one."""

    outcome: CheckOutcome
    ours: bool  # crashed or misconfigured: our failure
    duration_ms: int
    limit_events: list[LimitEvent] = field(default_factory=list)  # the learner hit these during this check
    peak_memory_bytes: int | None = None  # of a visible check's own sandbox


def _grade_in_sandbox(state: RunState) -> None:
    labels = {"shipshape.db": database_label()}
    with _sandbox(state, labels) as box:
        grading_state.run_phase_mark(
            run=state.run, phase=GradingRun.Phase.SANDBOX_READY, image_digest=box.image_id[:100]
        )
        ctx = GradingContext(
            sandbox=box,
            submission_dir=state.submission_dir,
            grader_dir=state.grader_dir,
            limits=state.limits,
            course_slug=state.revision.lab.course.slug,
            revision_id=state.revision.pk,
            run_id=state.run.pk,
            deadline=time.monotonic() + state.limits.wall_seconds,
            sandbox_labels=labels,
        )
        checks = state.spec.checks

        def in_main(position: int) -> _Ran:
            # Only the in-order chain's thread uses the main sandbox, so what it noted meanwhile is this check's.
            noted = len(box.limit_events)
            ran = _check_run(ctx, state, checks[position])
            ran.limit_events = list(box.limit_events[noted:])
            return ran

        def in_own(position: int) -> _Ran:
            with own_sandbox(ctx) as (own_ctx, own_box):
                ran = _check_run(own_ctx, state, checks[position])
                if checks[position].visibility != "hidden":
                    ran.peak_memory_bytes = own_box.resources().get("peak_memory_bytes")
            ran.limit_events = list(own_box.limit_events)
            return ran

        ran = run_checks(
            plan_checks(checks, parallel=settings.GRADING_PARALLEL_CHECKS),
            in_main=in_main,
            in_own=in_own,
            started=lambda position: grading_state.run_check_started(run=state.run, position=position),
            finished=lambda position, done: _store_check(ctx, state, position, checks[position], done),
        ).results
        grading_state.run_phase_mark(run=state.run, phase=GradingRun.Phase.CHECKS_FINISHED)
        _in_lab_order(state, ran)
        visible = [e for p in sorted(ran) if checks[p].visibility != "hidden" for e in ran[p].limit_events]
        hidden = [e for p in sorted(ran) if checks[p].visibility == "hidden" for e in ran[p].limit_events]
        state.resources = box.resources()
        peaks = [state.resources.get("peak_memory_bytes"), *(r.peak_memory_bytes for r in ran.values())]
        if any(peak is not None for peak in peaks):
            state.resources["peak_memory_bytes"] = max(peak for peak in peaks if peak is not None)
        state.resources["limits_hit"] = [{"reason": e.reason, "message": e.message} for e in _once_per_reason(visible)]
        _note_stopping_limit(state, visible=visible, hidden=hidden)


def _in_lab_order(state: RunState, ran: dict[int, _Ran]) -> None:
    """Results, logs and our failures as the lab lists its checks, whatever order the checks ended in."""
    position_of = {result.check_id: result.position for result in state.results}
    state.results.sort(key=lambda result: result.position)
    state.our_failures.sort(key=lambda check_id: position_of.get(check_id, -1))
    state.log_parts = [_log_section(r) for r in state.results if not r.hidden_until_due]
    state.hidden_log_parts = [_log_section(r) for r in state.results if r.hidden_until_due]


def _once_per_reason(events: list[LimitEvent]) -> list[LimitEvent]:
    # Each sandbox notes a reason once; several sandboxes may each have noted the same one.
    kept: dict[str, LimitEvent] = {}
    for event in events:
        kept.setdefault(event.reason, event)
    return list(kept.values())


def _note_stopping_limit(state: RunState, *, visible: list, hidden: list) -> None:
    """A limit that stopped the code fails the revision. One hit during a hidden check is named without the
    check's details, which would give it away; limits that only cut something short are listed as notes, and
    only those of visible checks."""
    stopping = [event for event in visible if event.stops_run]
    if stopping:
        state.failure_reason = stopping[0].reason
        state.failure_message = f"Your code was stopped: {stopping[0].message}."
        return
    stopping = [event for event in hidden if event.stops_run]
    if stopping:
        state.failure_reason = stopping[0].reason
        state.failure_message = (
            "Your code was stopped by a limit during a check that stays hidden until the due date "
            f"({Revision.FailureReason(stopping[0].reason).label})."
        )


def _check_run(ctx: GradingContext, state: RunState, check_spec: CheckSpec) -> _Ran:
    """Run one check; safe in any thread (it writes nothing to the database or to `state`)."""
    started = time.monotonic()
    outcome, ours = _outcome(ctx, state, check_spec)
    return _Ran(outcome, ours, int((time.monotonic() - started) * 1000))


def _store_check(ctx: GradingContext, state: RunState, position: int, check_spec: CheckSpec, ran: _Ran) -> None:
    """Store a check's result as soon as it ends, so the page shows it live (on the grading's own thread)."""
    outcome = ran.outcome
    max_points = float(check_spec.points)
    points = max(0.0, min(float(outcome.points), max_points)) if outcome.status in ("pass", "fail") else 0.0
    result = grading_state.result_store(
        run=state.run,
        position=position,
        check_id=check_spec.id[:100],
        kind=check_spec.kind[:60],
        category=check_spec.category[:40],
        status=outcome.status,
        points=Decimal(str(round(points, 2))),
        max_points=Decimal(str(round(max_points, 2))),
        message=clean_output(outcome.message, limit=4000),
        hint=clean_output(outcome.hint, limit=2000),
        hint_url=ctx.lesson_url(check_spec.lesson)[:500],
        evidence=outcome.evidence if isinstance(outcome.evidence, dict) else {},
        hidden_until_due=check_spec.visibility == "hidden",
        duration_ms=ran.duration_ms,
    )
    state.results.append(result)
    if (ran.ours or outcome.status == "error") and check_spec.id not in state.our_failures:
        # Undecided is ours: never scored, the run is retried (see the module docstring).
        if not ran.ours:
            logger.warning(
                "check %s of revision %s could not decide: %s", check_spec.id, state.revision.pk, result.message
            )
        state.our_failures.append(check_spec.id)


def _outcome(ctx: GradingContext, state: RunState, check_spec: CheckSpec) -> tuple[CheckOutcome, bool]:
    """What one check concluded, and whether that is our failure (a crash, bad args: the whole run is retried)."""
    cls = check_kind(check_spec.kind)
    if cls is None:
        logger.error("check %s of lab %s has an unknown kind %r", check_spec.id, state.revision.lab_id, check_spec.kind)
        return CheckOutcome("error", ERROR_MESSAGE), True
    if ctx.remaining_s() <= 0.1:
        ctx.sandbox.note_limit("timeout", f"timed out after {ctx.limits.wall_seconds} s (the whole grading run)")
        return CheckOutcome(
            "skipped", f"Not run: the grading run used its whole wall-clock budget of {ctx.limits.wall_seconds} s."
        ), False
    args = dict(check_spec.args)
    if problems := cls.validate_args(args):
        logger.error("check %s of lab %s has invalid args: %s", check_spec.id, state.revision.lab_id, problems)
        return CheckOutcome("error", ERROR_MESSAGE, evidence={"lab_problems": problems}), True
    try:
        return cls(check_id=check_spec.id, args=args, points=float(check_spec.points)).run(ctx), False
    except PlatformError:
        raise
    except Exception:
        logger.exception("check %s (%s) crashed on revision %s", check_spec.id, check_spec.kind, state.revision.pk)
        return CheckOutcome("error", ERROR_MESSAGE), True


def _raise_our_failures(state: RunState) -> None:
    if state.our_failures:
        details = "; ".join(f"{r.check_id}: {r.message}" for r in state.results if r.check_id in state.our_failures)
        raise PlatformError(f"check(s) {', '.join(state.our_failures)} could not decide ({details[:2000]})")


def _store_verdict(state: RunState) -> str:
    log = clean_output("\n\n".join(state.log_parts), limit=LOG_LIMIT)
    hidden_log = clean_output("\n\n".join(state.hidden_log_parts), limit=LOG_LIMIT)
    grading_state.run_record(run=state.run, log=log, hidden_log=hidden_log, resources=state.resources)
    done = grading_state.revision_finish(
        revision=state.revision,
        run=state.run,
        score=score_results(state.results),
        failure_reason=state.failure_reason,
        failure_message=state.failure_message,
    )
    return (Revision.State.FAILED if state.failure_reason else Revision.State.GRADED) if done else state.revision.state


def _log_section(result: CheckResult) -> str:
    parts = [f"== {result.check_id} [{result.status}] {result.message}"]
    for key in ("stdout", "stderr", "log"):
        value = result.evidence.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(f"-- {key}\n{value.rstrip()}")
    return "\n".join(parts)
