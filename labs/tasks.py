"""Celery tasks: thin, take ids, delegate to labs.grading and labs.sandbox.

Platform errors (ours) are retried with backoff and never turn into a learner-visible failure; soft and hard
time limits are passed per call by `revision_send`, derived from the lab's wall budget.
"""

import logging

from celery import shared_task
from celery.signals import worker_ready

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
    return grade_revision(revision_id=revision_id, worker=self.request.hostname or "")


LEARNERS_QUEUE = "celery"  # Celery's default queue: learners' submissions, self-tests
REGRADES_QUEUE = "regrades"  # regrade previews' copies (labs.regrades)


def revision_queue(revision: Revision) -> str:
    """A regrade preview's copy goes to the low-priority queue; everything else to the default one. Workers
    consume both (`-Q celery,regrades`); kombu's Redis transport takes the queues in turn (round robin), so
    learners' gradings keep flowing while a big preview runs."""
    return REGRADES_QUEUE if revision.regrade_id is not None else LEARNERS_QUEUE


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
    return reaper.containers_reap(live_runs=grading_state.runs_live)


@shared_task(name="labs.tasks.work_claims_expire")
def work_claims_expire() -> int:
    return loop.work_claims_expire()


@worker_ready.connect
def _reap_at_worker_start(**_: object) -> None:
    # A worker that died (kill -9, host reboot) leaves containers behind; clean up before taking work.
    try:
        reaper.containers_reap(live_runs=grading_state.runs_live)
    except Exception:
        logger.exception("reaping sandbox containers at worker start failed")
