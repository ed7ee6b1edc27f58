"""Celery tasks: thin, take ids, delegate to labs.grading / labs.services.grading.

Platform errors (ours) are retried with backoff and never turn into a learner-visible failure; soft and hard
time limits are passed per call by labs.services.grading.revision_send, derived from the lab's wall budget.
"""

import logging

from celery import shared_task
from celery.signals import worker_ready

from labs.sandbox.errors import PlatformError

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
    from labs.grading.orchestrator import grade_revision

    return grade_revision(revision_id=revision_id, worker=self.request.hostname or "")


@shared_task(name="labs.tasks.revisions_sweep")
def revisions_sweep() -> dict:
    from labs.services.grading import revisions_sweep as sweep

    return sweep()


@shared_task(name="labs.tasks.containers_reap")
def containers_reap() -> int:
    from labs.services.grading import containers_reap as reap

    return reap()


@worker_ready.connect
def _reap_at_worker_start(**_: object) -> None:
    # A worker that died (kill -9, host reboot) leaves containers behind; clean up before taking work.
    try:
        from labs.services.grading import containers_reap as reap

        reap()
    except Exception:
        logger.exception("reaping sandbox containers at worker start failed")
