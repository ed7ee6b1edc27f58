"""Grading state changes (HackSoft services): enqueue, claim, phase marks, finish, sweep, reap.

Every change of Revision.state goes through `revision_transition`, a conditional UPDATE that checks the
transition is allowed and that nobody changed the state meanwhile, so a message delivered twice, a worker
that died, and the sweeper can never grade one revision twice or overwrite each other.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from labs.models import GradingRun, Revision

logger = logging.getLogger(__name__)

S = Revision.State
ALLOWED = {
    S.QUEUED: {S.RUNNING, S.ERROR},
    S.RUNNING: {S.GRADED, S.FAILED, S.QUEUED, S.ERROR},
    S.ERROR: {S.QUEUED},  # staff requeue
    S.GRADED: set(),
    S.FAILED: set(),
}
MAX_ERRORS = 5  # attempts that failed on our side before a revision is parked in `error` for staff
QUEUED_RESEND_AFTER_S = 120  # a queued revision nobody claimed by then gets its message sent again
CLAIM_MARGIN_S = 120  # beyond the task's hard time limit, so the sweeper never takes a live run


def _wall_seconds(revision: Revision) -> int:
    limits = (revision.lab.spec or {}).get("limits") or {}
    return min(int(limits.get("wall_seconds", 120)), settings.GRADING_MAX_WALL_SECONDS)


def error_backoff_s(error_count: int) -> int:
    return min(300, 10 * 2 ** max(0, error_count - 1))


def revision_transition(*, revision: Revision, to_state: str, **fields: Any) -> bool:
    """Move `revision` from its current state to `to_state`, setting `fields`; False if someone else moved it."""
    from_state = revision.state
    if to_state not in ALLOWED[from_state]:
        raise ValueError(f"revision {revision.pk}: {from_state} -> {to_state} is not an allowed transition")
    updated = Revision.objects.filter(pk=revision.pk, state=from_state).update(state=to_state, **fields)
    if updated:
        revision.refresh_from_db()
    return bool(updated)


def revision_send(*, revision: Revision) -> None:
    """Publish the grading task, with time limits derived from the lab's wall budget."""
    from labs.tasks import revision_grade

    wall = _wall_seconds(revision)
    revision_grade.apply_async(args=[revision.pk], soft_time_limit=wall + 60, time_limit=wall + 90)


def revision_enqueue(*, revision: Revision) -> None:
    """Queue `revision` for grading once the surrounding transaction has committed it."""
    Revision.objects.filter(pk=revision.pk).update(
        deadline_at=timezone.now() + timedelta(seconds=QUEUED_RESEND_AFTER_S)
    )
    # robust: with Redis down the revision is already committed; the sweeper re-sends it once Redis is back,
    # so the learner's upload must not fail with a 500 here.
    transaction.on_commit(lambda: revision_send(revision=revision), robust=True)


def revision_claim(*, revision_id: int) -> bool:
    """queued -> running, for exactly one caller; the deadline tells the sweeper when the worker is gone."""
    revision = Revision.objects.select_related("lab").filter(pk=revision_id).first()
    if revision is None:
        return False
    deadline = timezone.now() + timedelta(seconds=_wall_seconds(revision) + 90 + CLAIM_MARGIN_S)
    return bool(Revision.objects.filter(pk=revision_id, state=S.QUEUED).update(state=S.RUNNING, deadline_at=deadline))


def run_phase_mark(*, run: GradingRun, phase: str, **fields: Any) -> None:
    """Record that `run` reached `phase` now (the revision page shows it live)."""
    stamp_field = {
        "started": "started_at",
        "sandbox_ready": "sandbox_ready_at",
        "checks_finished": "checks_finished_at",
        "results_stored": "results_stored_at",
    }.get(phase)
    values: dict[str, Any] = {"phase": phase, **fields}
    if stamp_field:
        values[stamp_field] = timezone.now()
    GradingRun.objects.filter(pk=run.pk).update(**values)
    for name, value in values.items():
        setattr(run, name, value)


def revision_finish(*, revision: Revision, run: GradingRun, state: str, **fields: Any) -> bool:
    """running -> graded | failed with the score; False when the run was taken over (sweeper) meanwhile."""
    latest = GradingRun.objects.filter(revision=revision).order_by("-attempt").values_list("pk", flat=True).first()
    if latest != run.pk:
        logger.warning("run %s of revision %s is stale; not storing its verdict", run.pk, revision.pk)
        return False
    with transaction.atomic():
        done = revision_transition(revision=revision, to_state=state, deadline_at=None, **fields)
        if done:
            run_phase_mark(run=run, phase="results_stored", outcome=state)
    return done


def revision_error(*, revision: Revision, run: GradingRun | None, detail: str) -> str:
    """Our failure: back to queued with a backoff, or parked in `error` after MAX_ERRORS. Returns the state."""
    if run is not None:
        GradingRun.objects.filter(pk=run.pk).update(outcome="error", error_detail=detail[:10000], phase="error")
    count = revision.error_count + 1
    if count >= MAX_ERRORS:
        revision_transition(revision=revision, to_state=S.ERROR, error_count=count, deadline_at=None)
    else:
        revision_transition(
            revision=revision,
            to_state=S.QUEUED,
            error_count=count,
            deadline_at=timezone.now() + timedelta(seconds=error_backoff_s(count) + QUEUED_RESEND_AFTER_S),
        )
    return revision.state


def revisions_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Requeue revisions whose worker died (running past deadline) and re-send lost queued messages."""
    now = now or timezone.now()
    requeued = parked = resent = 0
    for revision in Revision.objects.select_related("lab").filter(state=S.RUNNING, deadline_at__lt=now):
        open_runs = GradingRun.objects.filter(revision=revision, outcome="")
        open_runs.update(outcome="abandoned", phase="abandoned", error_detail="worker stopped before finishing")
        state = revision_error(revision=revision, run=None, detail="")
        if state == S.QUEUED:
            Revision.objects.filter(pk=revision.pk).update(deadline_at=now + timedelta(seconds=QUEUED_RESEND_AFTER_S))
            revision_send(revision=revision)
            requeued += 1
        else:
            parked += 1
    stale = Revision.objects.select_related("lab").filter(state=S.QUEUED, deadline_at__lt=now)
    for revision in stale:
        Revision.objects.filter(pk=revision.pk, state=S.QUEUED).update(
            deadline_at=now + timedelta(seconds=QUEUED_RESEND_AFTER_S)
        )
        revision_send(revision=revision)
        resent += 1
    if requeued or parked or resent:
        logger.info("sweep: requeued %s, parked %s, re-sent %s", requeued, parked, resent)
    return {"requeued": requeued, "parked": parked, "resent": resent}


def database_label() -> str:
    """Tells apart containers of different databases (test runs, other checkouts) sharing one engine."""
    from django.db import connection

    name = f"{connection.settings_dict.get('ENGINE')}:{connection.settings_dict.get('NAME')}"
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def containers_reap(*, min_age_s: float | None = None) -> int:
    """Remove sandbox containers whose grading run is no longer running; returns how many were removed."""
    from labs.sandbox import SandboxUnavailable, docker_client

    try:
        client = docker_client()
    except SandboxUnavailable as exc:
        logger.warning("reaper: %s", exc)
        return 0
    runless_age = settings.GRADING_MAX_WALL_SECONDS + 60 if min_age_s is None else min_age_s
    removed = 0
    own_db = database_label()
    try:
        for container in client.containers.list(all=True, filters={"label": "shipshape.managed=1"}):
            labels = container.labels
            if labels.get("shipshape.db", own_db) != own_db:
                continue  # another database's worker owns it
            run_id = labels.get("shipshape.run", "")
            if run_id.isdigit():
                run = GradingRun.objects.filter(pk=int(run_id)).select_related("revision").first()
                latest = (
                    GradingRun.objects.filter(revision_id=run.revision_id).order_by("-attempt").first() if run else None
                )
                alive = (
                    run is not None
                    and run.outcome == ""
                    and run.revision.state == S.RUNNING
                    and latest is not None
                    and latest.pk == run.pk
                )
                if alive:
                    continue
            else:
                created = container.attrs.get("Created", "")
                age = (timezone.now() - datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")).total_seconds()
                if age < runless_age:
                    continue
            try:
                container.remove(force=True, v=True)
                removed += 1
            except Exception:
                logger.exception("reaper: could not remove %s", container.id)
    finally:
        client.close()
    if removed:
        logger.info("reaper: removed %s sandbox containers", removed)
    return removed


def run_next_attempt(*, revision: Revision) -> int:
    last = GradingRun.objects.filter(revision=revision).order_by("-attempt").values_list("attempt", flat=True).first()
    return (last or 0) + 1


__all__ = [
    "containers_reap",
    "revision_claim",
    "revision_enqueue",
    "revision_error",
    "revision_finish",
    "revision_send",
    "revision_transition",
    "revisions_sweep",
    "run_phase_mark",
]
