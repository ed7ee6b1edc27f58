"""The owner of grading state: every change to a Revision's grading fields and to its GradingRun and CheckResult
rows goes through a function here, and nothing else writes them.

Revision.state changes only through `revision_transition`, a conditional UPDATE that checks the transition is
allowed and that nobody changed the state meanwhile, so a message delivered twice, a worker that died, and the
sweeper can never grade one revision twice or overwrite each other.

    queued ──claim──▶ running ──finish──▶ graded | failed
       ▲                 │
       └──── error ◀─────┘  (ours: back to queued with a backoff; parked in `error` after MAX_ERRORS)

    graded | failed ──regrade applied──▶ graded | failed   (`revision_results_replace`: a new attempt, copied)

A learner has at most one grading in flight, across labs, and theirs are claimed in submission order: a claim is
refused while another of their revisions runs or an older one waits (`revision_claim`); the task that ends a
grading sends the next (`revision_next_waiting`). Self-tests and regrade copies belong to system accounts and are
not limited.

A regrade preview's copies (Revision.regrade set) are graded like any revision; when one finishes or is parked,
labs.regrades.report is told once the transaction commits, and a copy of a cancelled preview is never claimed.

This module knows nothing of Celery or Docker: the sweeper is handed the function that re-sends a revision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from labs.grading.scoring import Score
from labs.models import CheckResult, GradingRun, Regrade, Revision
from labs.regrades import report as regrade_report
from labs.reviews import loop

logger = logging.getLogger(__name__)

S = Revision.State
Phase = GradingRun.Phase
Outcome = GradingRun.Outcome
ALLOWED = {
    S.QUEUED: {S.RUNNING, S.ERROR},
    S.RUNNING: {S.GRADED, S.FAILED, S.QUEUED, S.ERROR},
    S.ERROR: {S.QUEUED},  # staff requeue
    S.GRADED: set(),
    S.FAILED: set(),
}
MAX_ERRORS = 5  # attempts that failed on our side before a revision is parked in `error` for staff
QUEUED_RESEND_AFTER_S = 120  # a queued revision nobody claimed by then gets its message sent again
TASK_SOFT_MARGIN_S = 60  # the task's soft time limit: the lab's wall budget plus this
TASK_HARD_MARGIN_S = 90  # the task's hard time limit
CLAIM_MARGIN_S = 120  # beyond the task's hard time limit, so the sweeper never takes a live run
_STAMPS = dict(GradingRun.STAMPED_PHASES)


def grading_wall_seconds(*, revision: Revision) -> int:
    """The run's wall budget: the lab's, clamped to today's platform maximum."""
    return revision.lab.labspec.limits.sandbox_limits().wall_seconds


def task_time_limits(*, revision: Revision) -> tuple[int, int]:
    """(soft, hard) Celery time limits for grading `revision`."""
    wall = grading_wall_seconds(revision=revision)
    return wall + TASK_SOFT_MARGIN_S, wall + TASK_HARD_MARGIN_S


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


def revision_queue_deadline_set(*, revision: Revision, now: datetime | None = None) -> None:
    """When the sweeper re-sends `revision` if no worker has claimed it by then."""
    deadline = (now or timezone.now()) + timedelta(seconds=QUEUED_RESEND_AFTER_S)
    Revision.objects.filter(pk=revision.pk, state=S.QUEUED).update(deadline_at=deadline)


def revision_claim(*, revision_id: int) -> Revision | None:
    """queued -> running, for exactly one caller, who gets the revision; None for everyone else. The deadline
    tells the sweeper when the worker is gone."""
    revision = Revision.objects.select_related("lab", "lab__course").filter(pk=revision_id).first()
    if revision is None or revision.state != S.QUEUED:
        return None
    if revision.regrade_id is not None and _regrade_cancelled(revision):
        # A cancelled preview's copy is never graded; clearing its deadline stops the sweeper re-sending it.
        Revision.objects.filter(pk=revision.pk, state=S.QUEUED).update(deadline_at=None)
        return None
    _soft, hard = task_time_limits(revision=revision)
    deadline = timezone.now() + timedelta(seconds=hard + CLAIM_MARGIN_S)
    if revision.is_learner_work:
        if not _learner_claim(revision=revision, deadline=deadline):
            return None
    elif not revision_transition(revision=revision, to_state=S.RUNNING, deadline_at=deadline):
        return None
    return Revision.objects.select_related("lab", "lab__course").get(pk=revision_id)


def _ahead_of(revision: Revision):
    """The learner's revisions that must go before `revision`: one running (any lab), or an older one queued."""
    mine = Revision.objects.learner_work().filter(user_id=revision.user_id).exclude(pk=revision.pk)
    return mine.filter(Q(state=S.RUNNING) | Q(state=S.QUEUED, pk__lt=revision.pk))


def _learner_claim(*, revision: Revision, deadline: datetime) -> bool:
    """Claim a learner's revision only when none of theirs runs and none older waits: one grading in flight per
    learner, in submission order. Claims of one learner are serialised: on PostgreSQL by a row lock on the user
    (FOR NO KEY UPDATE, which does not block inserts referencing the user), on SQLite by the IMMEDIATE transaction
    that holds the write lock. A refused revision stays queued with its deadline moved to its blockers' (the
    sweeper re-sends it only if they stall); the task that ends a grading sends the next one at once."""
    user_model = Revision._meta.get_field("user").related_model
    with transaction.atomic():
        if connection.features.has_select_for_update:
            list(user_model.objects.select_for_update(no_key=True).filter(pk=revision.user_id).values_list("pk"))
        ahead = _ahead_of(revision)
        if not ahead.exists():
            return revision_transition(revision=revision, to_state=S.RUNNING, deadline_at=deadline)
        now = timezone.now()
        later = max(now + timedelta(seconds=QUEUED_RESEND_AFTER_S), ahead.aggregate(d=Max("deadline_at"))["d"] or now)
        waiting = Revision.objects.filter(pk=revision.pk, state=S.QUEUED)
        waiting.filter(Q(deadline_at__isnull=True) | Q(deadline_at__lt=later)).update(deadline_at=later)
    logger.info("revision %s waits behind the learner's earlier grading", revision.pk)
    return False


def revision_next_waiting(*, revision_id: int) -> Revision | None:
    """After a grading of `revision_id` ended (finished, parked, or back in the queue): the learner's oldest queued
    revision, to send now, or None (not learner work, nothing waits, or the oldest is this one, which its task's
    retry sends again)."""
    revision = Revision.objects.filter(pk=revision_id).first()
    if revision is None or not revision.is_learner_work:
        return None
    queued = Revision.objects.learner_work().filter(user_id=revision.user_id, state=S.QUEUED)
    oldest = queued.select_related("lab").order_by("pk").first()
    if oldest is None or oldest.pk == revision.pk:
        return None
    return oldest


def _regrade_cancelled(revision: Revision) -> bool:
    return Regrade.objects.filter(pk=revision.regrade_id, status=Regrade.Status.CANCELLED).exists()


def _regrade_shadow_done(revision: Revision) -> None:
    """A regrade preview's copy finished or was parked: the preview may be complete (checked after commit, so
    the last of several copies finishing at once sees all of them; a failure here never undoes a grading)."""
    if revision.regrade_id is not None:
        regrade_id = revision.regrade_id
        transaction.on_commit(lambda: regrade_report.regrade_finish_if_done(regrade_id=regrade_id), robust=True)


def run_start(*, revision: Revision, worker: str) -> GradingRun:
    """A new attempt at grading a claimed revision."""
    last = GradingRun.objects.filter(revision=revision).order_by("-attempt").values_list("attempt", flat=True).first()
    return GradingRun.objects.create(
        revision=revision,
        attempt=(last or 0) + 1,
        worker=worker[:200],
        queued_at=revision.queued_at or revision.created_at,
        started_at=timezone.now(),
        phase=Phase.STARTED,
    )


def run_phase_mark(*, run: GradingRun, phase: str, **fields: Any) -> None:
    """Record that `run` reached `phase` now (the revision page shows it live)."""
    values: dict[str, Any] = {"phase": Phase(phase), **fields}
    if phase in _STAMPS:
        values[_STAMPS[phase]] = timezone.now()
    GradingRun.objects.filter(pk=run.pk).update(**values)
    for name, value in values.items():
        setattr(run, name, value)


def run_check_started(*, run: GradingRun, position: int) -> None:
    """The run started its check at `position` (0-based); pages say "check 3 of 16", never a check's id."""
    run_phase_mark(run=run, phase=Phase.CHECKS, check_position=position)


def result_store(*, run: GradingRun, position: int, **fields: Any) -> CheckResult:
    """One check's result, stored as soon as the check ends so the page shows it live."""
    return CheckResult.objects.create(run=run, position=position, **fields)


def revision_finish(
    *, revision: Revision, run: GradingRun, score: Score, failure_reason: str = "", failure_message: str = ""
) -> bool:
    """running -> graded (or failed, when `failure_reason` names a limit that stopped the code), with the score;
    False when the run was taken over (sweeper) meanwhile."""
    state = S.FAILED if failure_reason else S.GRADED
    with transaction.atomic():
        # The revision's row is locked before the run is judged current: the sweeper's requeue and a new claim
        # change that row, so neither can slip in between this check and the verdict below.
        list(Revision.objects.select_for_update(of=("self",)).filter(pk=revision.pk).values_list("pk"))
        latest = GradingRun.objects.filter(revision=revision).order_by("-attempt").values_list("pk", "outcome").first()
        if latest != (run.pk, Outcome.RUNNING):
            logger.warning("run %s of revision %s is stale; not storing its verdict", run.pk, revision.pk)
            return False
        done = revision_transition(
            revision=revision,
            to_state=state,
            deadline_at=None,
            score=Decimal(str(score.points)),
            max_score=Decimal(str(score.max_points)),
            scores_by_category=score.by_category_json(),
            failure_reason=Revision.FailureReason(failure_reason),
            failure_message=failure_message,
        )
        if done:
            run_phase_mark(run=run, phase=Phase.RESULTS_STORED, outcome=Outcome(state))
            loop.work_revision_graded(revision=revision)
            _regrade_shadow_done(revision)
    return done


def revision_results_replace(*, revision: Revision, source: Revision) -> GradingRun:
    """A regrade applied: the newest run of `source` (a preview's copy of `revision`, graded by the changed
    grader) is copied onto `revision` as a new attempt, logs and results included, and `revision` takes its
    verdict (graded or failed, with the reason) and score. Earlier attempts stay. Only between finished states;
    the caller then tells the loop (loop.work_regraded), which owns the learner's grades."""
    finished = (S.GRADED, S.FAILED)
    if revision.state not in finished or source.state not in finished:
        raise ValueError(f"revision {revision.pk} ({revision.state}) or {source.pk} ({source.state}) is not finished")
    origin = GradingRun.objects.filter(revision=source).order_by("-attempt").first()
    if origin is None:
        raise ValueError(f"revision {source.pk} has no grading run to copy")
    copied = ("worker", "image_digest", "queued_at", "started_at", "sandbox_ready_at", "checks_finished_at")
    copied += ("results_stored_at", "phase", "outcome", "log", "hidden_log", "resources")
    with transaction.atomic():
        last = GradingRun.objects.filter(revision=revision).order_by("-attempt").values_list("attempt", flat=True)
        run = GradingRun.objects.create(
            revision=revision, attempt=(last.first() or 0) + 1, **{name: getattr(origin, name) for name in copied}
        )
        CheckResult.objects.bulk_create(
            CheckResult(
                run=run,
                **{
                    f.name: getattr(result, f.name)
                    for f in CheckResult._meta.concrete_fields
                    if f.name not in ("id", "run")
                },
            )
            for result in origin.check_results.all()
        )
        updated = Revision.objects.filter(pk=revision.pk, state=revision.state).update(
            state=source.state,
            score=source.score,
            max_score=source.max_score,
            scores_by_category=source.scores_by_category,
            failure_reason=source.failure_reason,
            failure_message=source.failure_message,
        )
        if not updated:
            raise ValueError(f"revision {revision.pk} changed while its results were replaced")
    revision.refresh_from_db()
    return run


def run_record(*, run: GradingRun, log: str, hidden_log: str, resources: dict[str, Any]) -> None:
    """The run's cleaned logs (visible checks', hidden checks' apart) and what it used, once its checks finished."""
    GradingRun.objects.filter(pk=run.pk).update(log=log, hidden_log=hidden_log, resources=resources)
    run.log, run.hidden_log, run.resources = log, hidden_log, resources


def revision_error(*, revision: Revision, run: GradingRun | None, detail: str) -> str:
    """Our failure: back to queued with a backoff, or parked in `error` after MAX_ERRORS. Returns the state."""
    if run is not None:
        GradingRun.objects.filter(pk=run.pk).update(
            outcome=Outcome.ERROR, error_detail=detail[:10000], phase=Phase.ERROR
        )
    count = revision.error_count + 1
    if count >= MAX_ERRORS:
        if revision_transition(revision=revision, to_state=S.ERROR, error_count=count, deadline_at=None):
            loop.work_revision_needs_attention(revision=revision)
            _regrade_shadow_done(revision)
    else:
        revision_transition(
            revision=revision,
            to_state=S.QUEUED,
            error_count=count,
            deadline_at=timezone.now() + timedelta(seconds=error_backoff_s(count) + QUEUED_RESEND_AFTER_S),
        )
    return revision.state


def revision_requeue(*, revision: Revision, send: Callable[[Revision], None]) -> bool:
    """error ("needs attention") -> queued, by staff once the cause is fixed; the retry count starts afresh."""
    if revision.state != S.ERROR:
        return False
    if not revision_transition(revision=revision, to_state=S.QUEUED, error_count=0, deadline_at=None):
        return False
    revision_queue_deadline_set(revision=revision)
    send(revision)
    return True


def revisions_sweep(*, send: Callable[[Revision], None], now: datetime | None = None) -> dict[str, int]:
    """Requeue revisions whose worker died (running past deadline) and re-send lost queued messages with `send`."""
    now = now or timezone.now()
    requeued = parked = resent = 0
    for revision in Revision.objects.select_related("lab").filter(state=S.RUNNING, deadline_at__lt=now):
        if _revision_take_back(revision=revision, now=now, send=send) == S.QUEUED:
            requeued += 1
        else:
            parked += 1
    for revision in Revision.objects.select_related("lab").filter(state=S.QUEUED, deadline_at__lt=now):
        revision_queue_deadline_set(revision=revision, now=now)
        send(revision)
        resent += 1
    if requeued or parked or resent:
        logger.info("sweep: requeued %s, parked %s, re-sent %s", requeued, parked, resent)
    return {"requeued": requeued, "parked": parked, "resent": resent}


def revisions_orphaned_requeue(*, worker: str, started_before: datetime, send: Callable[[Revision], None]) -> int:
    """At a worker's start: the revisions a previous process of the same worker name was grading when it died
    (kill -9, OOM, a host reboot) are taken back at once, instead of waiting for the sweeper's deadline (the lab's
    wall time and a margin), which would hold the learner's later submissions back as long. Only runs started
    before this process began: none of them can be this process's own. Returns how many were taken back."""
    if not worker:
        return 0
    orphaned = Revision.objects.select_related("lab").filter(
        state=S.RUNNING,
        runs__worker=worker,
        runs__outcome=Outcome.RUNNING,
        runs__started_at__lt=started_before,
    )
    now = timezone.now()
    taken = 0
    for revision in orphaned.distinct():
        _revision_take_back(revision=revision, now=now, send=send)
        taken += 1
    if taken:
        logger.info("worker %s took back %s revisions its previous process left running", worker, taken)
    return taken


def _revision_take_back(*, revision: Revision, now: datetime, send: Callable[[Revision], None]) -> str:
    """A running revision whose worker is gone: its run is abandoned, the revision requeued (our error, never
    scored) or parked after too many. Returns the state it ends in."""
    GradingRun.objects.filter(revision=revision, outcome=Outcome.RUNNING).update(
        outcome=Outcome.ABANDONED, phase=Phase.ABANDONED, error_detail="worker stopped before finishing"
    )
    state = revision_error(revision=revision, run=None, detail="")
    if state == S.QUEUED:
        revision_queue_deadline_set(revision=revision, now=now)
        send(revision)
    return state


def runs_live(run_ids: Iterable[int]) -> set[int]:
    """Which of `run_ids` are still being graded: unfinished, the latest attempt, their revision running."""
    ids = set(run_ids)
    runs = GradingRun.objects.filter(pk__in=ids, outcome=Outcome.RUNNING, revision__state=S.RUNNING)
    live = set()
    for run in runs.only("pk", "revision_id", "attempt"):
        newer = GradingRun.objects.filter(revision_id=run.revision_id, attempt__gt=run.attempt).exists()
        if not newer:
            live.add(run.pk)
    return live
