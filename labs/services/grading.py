"""Queueing a revision for grading, and the instructor's actions on grading (HackSoft services). Grading state
itself is owned by labs.grading.state."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labs.grading import state as grading_state
from labs.models import Lab, Revision
from labs.tasks import revision_send

logger = logging.getLogger(__name__)


def revision_enqueue(*, revision: Revision) -> None:
    """Queue `revision` for grading once the surrounding transaction has committed it."""
    grading_state.revision_queue_deadline_set(revision=revision)
    # robust: with Redis down the revision is already committed; the sweeper re-sends it once Redis is back,
    # so the learner's upload must not fail with a 500 here.
    transaction.on_commit(lambda: revision_send(revision), robust=True)


def revision_grade_again(*, revision: Revision, by: AbstractBaseUser) -> bool:
    """An instructor sends a revision that needs attention back to the queue (once the platform fault is fixed)."""
    done = grading_state.revision_requeue(revision=revision, send=revision_send)
    logger.info("revision graded again by staff", extra={"revision_id": revision.pk, "by": by.pk, "done": done})
    return done


def lab_hidden_checks_reveal(*, lab: Lab, by: AbstractBaseUser) -> None:
    """Show learners the hidden checks' results now (for a lab without a due date, or before it)."""
    if lab.hidden_revealed_at is None:
        lab.hidden_revealed_at = timezone.now()
        lab.save(update_fields=["hidden_revealed_at"])
        logger.info("hidden checks revealed", extra={"lab_id": lab.pk, "by": by.pk})
