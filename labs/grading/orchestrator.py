"""Grade one revision: claim it, run the lab's checks in order in one sandbox, store each result as it lands.

Verdicts: `graded` (score computed), `failed` (a learner command hit a limit: timeout or out of memory; the
partial score is still stored and the page says which limit), or our error (requeued with backoff by
labs.services.grading.revision_error, then `error` after MAX_ERRORS).

Scoring: the maximum is always every declared check's points. A check that could not decide because of the
submission (its service never listened, its kernel died) reports `error` and earns nothing: leaving it out of
the maximum would let a submission that breaks everything score full marks on what is left. A check that
crashed or was misconfigured is our fault instead: the whole run becomes a platform error and is retried, so
the learner is never charged for it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from labs.checks.base import CATEGORIES, CheckOutcome, GradingContext, check_class
from labs.models import CheckResult, GradingRun, Revision
from labs.sandbox import PlatformError, Sandbox, SandboxLimits, clean_output
from labs.services.grading import (
    database_label,
    revision_claim,
    revision_error,
    revision_finish,
    run_next_attempt,
    run_phase_mark,
)
from labs.storage import tree_files_dir

logger = logging.getLogger(__name__)

LOG_LIMIT = 64 * 1024
ERROR_MESSAGE = "This check could not run because of a problem on our side. It does not count against you."


@dataclass
class RunState:
    """Everything one grading attempt accumulates; one per call, never shared between tasks."""

    revision: Revision
    run: GradingRun
    limits: SandboxLimits
    submission_dir: Path
    grader_dir: Path
    deadline: float = 0.0
    results: list[CheckResult] = field(default_factory=list)
    log_parts: list[str] = field(default_factory=list)
    limit_reason: str = ""
    limit_message: str = ""
    our_failures: list[str] = field(default_factory=list)  # checks that crashed or are misconfigured


def grade_revision(*, revision_id: int, worker: str = "") -> str | None:
    """Grade `revision_id` if it is still queued; returns the final state, or None if someone else has it.

    Raises PlatformError when our side failed and the revision went back to the queue (the task retries).
    """
    if not revision_claim(revision_id=revision_id):
        logger.info("revision %s is not queued any more; nothing to do", revision_id)
        return None
    revision = Revision.objects.select_related("lab", "lab__course").get(pk=revision_id)
    run = GradingRun.objects.create(
        revision=revision,
        attempt=run_next_attempt(revision=revision),
        worker=worker[:200],
        queued_at=revision.queued_at or revision.created_at,
        started_at=timezone.now(),
        phase="started",
    )
    try:
        return _grade(revision, run)
    except PlatformError as exc:
        logger.warning("grading revision %s failed on our side: %s", revision_id, exc)
        state = revision_error(revision=revision, run=run, detail=str(exc))
        if state == Revision.State.QUEUED:
            raise
        return state
    except Exception as exc:
        logger.exception("grading revision %s crashed", revision_id)
        state = revision_error(revision=revision, run=run, detail=f"{type(exc).__name__}: {exc}")
        if state == Revision.State.QUEUED:
            raise PlatformError(f"grading crashed: {type(exc).__name__}") from exc
        return state


def _grade(revision: Revision, run: GradingRun) -> str:
    lab = revision.lab
    spec: dict[str, Any] = lab.spec or {}
    state = RunState(
        revision=revision,
        run=run,
        limits=SandboxLimits.from_spec(spec.get("limits")),
        submission_dir=tree_files_dir(tree_sha256=revision.tree_sha256),
        grader_dir=Path(settings.DATA_DIR) / "graders" / lab.grader_digest,
    )
    if not state.submission_dir.is_dir():
        raise PlatformError(f"stored submission {state.submission_dir} is missing")
    if not state.grader_dir.is_dir():
        raise PlatformError(f"grader bundle {state.grader_dir} is missing; re-import the course")
    labels = {"shipshape.db": database_label()}
    with Sandbox(
        limits=state.limits,
        submission_dir=state.submission_dir,
        grader_dir=state.grader_dir,
        revision_id=revision.pk,
        run_id=run.pk,
        labels=labels,
    ) as box:
        state.deadline = time.monotonic() + state.limits.wall_seconds
        run_phase_mark(run=run, phase="sandbox_ready", image_digest=box.image_id[:100])
        ctx = GradingContext(
            sandbox=box,
            submission_dir=state.submission_dir,
            grader_dir=state.grader_dir,
            spec=spec,
            limits=state.limits,
            course_slug=lab.course.slug,
            revision_id=revision.pk,
            run_id=run.pk,
            deadline=state.deadline,
            sandbox_labels=labels,
        )
        for position, check_spec in enumerate(spec.get("checks", [])):
            run_phase_mark(run=run, phase=f"check:{check_spec.get('id', position)}"[:40])
            state.results.append(_run_check(ctx, state, position, check_spec))
        run_phase_mark(run=run, phase="checks_finished")
        resources = box.resources()
    if state.our_failures:
        raise PlatformError(f"grader problem in check(s) {', '.join(state.our_failures)}; see the worker log")
    if box.limit_events:
        state.limit_reason = box.limit_events[0].reason
        state.limit_message = box.limit_events[0].message
    return _finish(state, resources)


def _run_check(ctx: GradingContext, state: RunState, position: int, check_spec: dict[str, Any]) -> CheckResult:
    check_id = str(check_spec.get("id", f"check-{position + 1}"))
    kind = str(check_spec.get("kind", ""))
    max_points = float(check_spec.get("points", 0))
    category = check_spec.get("category")
    started = time.monotonic()
    try:
        cls = check_class(kind)
        category = category or cls.default_category
        if ctx.remaining_s() <= 0.1:
            outcome = CheckOutcome(
                "skipped", f"Not run: the grading run used its whole wall-clock budget of {ctx.limits.wall_seconds} s."
            )
            if not ctx.sandbox.limit_events:
                from labs.sandbox import LimitEvent

                ctx.sandbox.limit_events.append(
                    LimitEvent("timeout", f"timed out after {ctx.limits.wall_seconds} s (the whole grading run)")
                )
        elif problems := cls.validate_args(dict(check_spec.get("args") or {})):
            logger.error("check %s of lab %s has invalid args: %s", check_id, state.revision.lab_id, problems)
            state.our_failures.append(check_id)
            outcome = CheckOutcome("error", ERROR_MESSAGE, evidence={"lab_problems": problems})
        else:
            outcome = cls(check_id=check_id, args=dict(check_spec.get("args") or {}), points=max_points).run(ctx)
    except PlatformError:
        raise
    except Exception:
        logger.exception("check %s (%s) crashed on revision %s", check_id, kind, state.revision.pk)
        state.our_failures.append(check_id)
        outcome = CheckOutcome("error", ERROR_MESSAGE)
    points = max(0.0, min(float(outcome.points), max_points)) if outcome.status in ("pass", "fail") else 0.0
    evidence = outcome.evidence if isinstance(outcome.evidence, dict) else {}
    result = CheckResult.objects.create(
        run=state.run,
        position=position,
        check_id=check_id[:100],
        kind=kind[:60],
        category=(category or "correctness")[:40],
        status=outcome.status,
        points=Decimal(str(round(points, 2))),
        max_points=Decimal(str(round(max_points, 2))),
        message=clean_output(outcome.message, limit=4000),
        hint=clean_output(outcome.hint, limit=2000),
        hint_url=ctx.lesson_url(str(check_spec.get("lesson") or ""))[:500],
        evidence=evidence,
        hidden_until_due=check_spec.get("visibility") == "hidden",
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    state.log_parts.append(_log_section(result))
    return result


def _log_section(result: CheckResult) -> str:
    parts = [f"== {result.check_id} [{result.status}] {result.message}"]
    for key in ("stdout", "stderr", "log"):
        value = result.evidence.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(f"-- {key}\n{value.rstrip()}")
    return "\n".join(parts)


def _finish(state: RunState, resources: dict[str, Any]) -> str:
    counted = state.results  # see the module docstring: undecided checks still count towards the maximum
    score = sum((r.points for r in counted), Decimal("0"))
    max_score = sum((r.max_points for r in counted), Decimal("0"))
    by_category: dict[str, dict[str, float]] = {}
    for r in counted:
        entry = by_category.setdefault(r.category, {"score": 0.0, "max": 0.0})
        entry["score"] += float(r.points)
        entry["max"] += float(r.max_points)
    ordered = {
        c: by_category[c] for c in [*CATEGORIES, *sorted(set(by_category) - set(CATEGORIES))] if c in by_category
    }
    run = state.run
    run_phase_mark(run=run, phase="checks_finished")
    log = "\n\n".join(state.log_parts)
    GradingRun.objects.filter(pk=run.pk).update(log=clean_output(log, limit=LOG_LIMIT), resources=resources)
    final = Revision.State.FAILED if state.limit_reason else Revision.State.GRADED
    fields: dict[str, Any] = {"score": score, "max_score": max_score, "scores_by_category": ordered}
    if state.limit_reason:
        fields["failure_reason"] = state.limit_reason
        fields["failure_message"] = f"Your code was stopped: {state.limit_message}."
    if not revision_finish(revision=state.revision, run=run, state=final, **fields):
        return state.revision.state
    return final
