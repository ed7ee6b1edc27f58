"""Celery tasks: thin, take ids, delegate to labs.grading and labs.sandbox.

Platform errors (ours) are retried with backoff and never turn into a learner-visible failure; soft and hard
time limits are passed per call by `revision_send`, derived from the lab's wall budget.

Queues that stay fair under load. `revision_send` publishes a grading on one of three queues (`revision_queue`):
`celery` (short labs: a wall budget, clamped to the platform maximum, of at most SHIPSHAPE_LONG_LAB_SECONDS,
default 120), `grading-long` (longer labs) and `regrades` (regrade previews' copies). Every worker consumes all
three (`-Q celery,grading-long,regrades`): kombu's Redis transport polls the queues in turn and rotates after each
message, so whenever a worker slot frees up, the queues take turns and a burst of long gradings (or a big preview)
never starves short ones. Prefetch is 1 with late acks: a worker reserves a message only for a free slot and holds
it until the grading ends, so nothing waits behind a long run in a worker's local buffer, and `--concurrency N`
is exactly N gradings at once. Turns decide only which queue a free slot serves next: if every slot of every
worker is busy with long gradings, a short one waits for the first slot to free. A deployment that must bound
short gradings' wait runs a dedicated worker with `-Q celery` (short only) next to the mixed ones.

A learner has at most one grading in flight (labs.grading.state.revision_claim refuses the others, which stay
queued); when a grading ends, `revision_grade` sends the learner's next waiting revision at once.
"""

import logging
from datetime import datetime

from celery import shared_task
from celery.signals import worker_init, worker_ready
from django.conf import settings
from django.utils import timezone

from labs.blobs import caches_sweep
from labs.errors import PlatformError
from labs.grading import state as grading_state
from labs.grading.orchestrator import grade_revision
from labs.models import Revision
from labs.reviews import loop
from labs.sandbox import reaper

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="labs.tasks.revision_grade",
    acks_late=True,
    autoretry_for=(PlatformError,),
    retry_backoff=10,
    retry_backoff_max=300,
    retry_jitter=False,
    max_retries=5,
)
def revision_grade(self, revision_id: int) -> str | None:
    try:
        final = grade_revision(revision_id=revision_id, worker=self.request.hostname or "")
    except PlatformError:
        _next_waiting_send(revision_id)  # back in the queue with a backoff; nothing older of the learner's waits
        raise
    if final is not None:  # None: not claimed (taken, finished, or waiting behind the learner's earlier grading)
        _next_waiting_send(revision_id)
    return final


def _next_waiting_send(revision_id: int) -> None:
    """The learner's next revision starts as soon as this one's grading ends; if sending fails (Redis down), it
    stays queued and the sweeper re-sends it."""
    try:
        waiting = grading_state.revision_next_waiting(revision_id=revision_id)
        if waiting is not None:
            revision_send(waiting)
    except Exception:
        logger.exception("sending the learner's next revision after %s failed; the sweeper will", revision_id)


SHORT_QUEUE = "celery"  # Celery's default queue: gradings of labs within the long-lab threshold, self-tests
LONG_QUEUE = "grading-long"  # gradings of labs whose wall budget is over settings.GRADING_LONG_LAB_SECONDS
REGRADES_QUEUE = "regrades"  # regrade previews' copies (labs.regrades)
QUEUES = (SHORT_QUEUE, LONG_QUEUE, REGRADES_QUEUE)  # what workers consume: -Q celery,grading-long,regrades


def revision_queue(revision: Revision) -> str:
    """Which queue grades `revision`: a regrade preview's copy goes to `regrades`; a lab whose wall budget (clamped
    to the platform maximum) is over GRADING_LONG_LAB_SECONDS to `grading-long`; the rest (learners' gradings of
    short labs, self-tests) to `celery`. Workers consume all three; kombu's Redis transport takes the queues in turn
    (round robin), so a burst of long gradings or a big preview never starves short gradings: each free slot of a
    worker takes its next message from the next non-empty queue (see the module's docstring)."""
    if revision.regrade_id is not None:
        return REGRADES_QUEUE
    if grading_state.grading_wall_seconds(revision=revision) > settings.GRADING_LONG_LAB_SECONDS:
        return LONG_QUEUE
    return SHORT_QUEUE


def revision_send(revision: Revision) -> None:
    """Publish the grading task on its queue, with time limits derived from the lab's wall budget."""
    soft, hard = grading_state.task_time_limits(revision=revision)
    revision_grade.apply_async(
        args=[revision.pk], soft_time_limit=soft, time_limit=hard, queue=revision_queue(revision)
    )


@shared_task(name="labs.tasks.revisions_sweep")
def revisions_sweep() -> dict:
    return grading_state.revisions_sweep(send=revision_send)


@shared_task(name="labs.tasks.containers_reap")
def containers_reap() -> int:
    # Host housekeeping rides along: the local file caches' set-aside copies and temporaries (labs.blobs).
    caches_sweep()
    return reaper.containers_reap(live_runs=grading_state.runs_live)


@shared_task(name="labs.tasks.work_claims_expire")
def work_claims_expire() -> int:
    return loop.work_claims_expire()


# When this worker process began, before it could take any task: the runs its name holds from before are orphans.
_worker_started_at: datetime | None = None


@worker_init.connect
def _remember_worker_start(**_: object) -> None:
    global _worker_started_at
    _worker_started_at = timezone.now()


@worker_ready.connect
def _reap_at_worker_start(sender=None, **_: object) -> None:
    # A worker that died (kill -9, host reboot) leaves revisions running and containers behind. Take the
    # revisions back first (their runs then stop being live), then reap, before taking work.
    try:
        grading_state.revisions_orphaned_requeue(
            worker=getattr(sender, "hostname", "") or "",
            started_before=_worker_started_at or timezone.now(),
            send=revision_send,
        )
    except Exception:
        logger.exception("taking back the revisions a previous worker process left running failed")
    try:
        reaper.containers_reap(live_runs=grading_state.runs_live)
    except Exception:
        logger.exception("reaping sandbox containers at worker start failed")
    try:
        caches_sweep()
    except Exception:
        logger.exception("sweeping the local file caches at worker start failed")
