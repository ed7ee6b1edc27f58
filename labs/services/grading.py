"""Queueing a revision for grading (HackSoft service). Grading state itself is owned by labs.grading.state."""

from __future__ import annotations

from django.db import transaction

from labs.grading import state as grading_state
from labs.models import Revision
from labs.tasks import revision_send


def revision_enqueue(*, revision: Revision) -> None:
    """Queue `revision` for grading once the surrounding transaction has committed it."""
    grading_state.revision_queue_deadline_set(revision=revision)
    # robust: with Redis down the revision is already committed; the sweeper re-sends it once Redis is back,
    # so the learner's upload must not fail with a 500 here.
    transaction.on_commit(lambda: revision_send(revision), robust=True)
