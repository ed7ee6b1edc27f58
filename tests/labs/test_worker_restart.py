"""A worker restarted under its name takes back, at its start, the revisions its previous process was grading."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labs.grading import state as grading_state
from labs.models import GradingRun, Revision
from tests.labs.factories import make_queued_revision

pytestmark = pytest.mark.django_db


def running(worker: str, *, started_ago: timedelta = timedelta(minutes=1)) -> Revision:
    claimed = grading_state.revision_claim(revision_id=make_queued_revision().pk)
    run = grading_state.run_start(revision=claimed, worker=worker)
    GradingRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - started_ago)
    return claimed


def test_it_requeues_what_the_previous_process_of_the_same_name_left_running():
    revision = running("grader-1@host-a")
    sent = []

    taken = grading_state.revisions_orphaned_requeue(
        worker="grader-1@host-a", started_before=timezone.now(), send=sent.append
    )

    assert taken == 1
    revision.refresh_from_db()
    assert (revision.state, revision.error_count, revision.score) == (Revision.State.QUEUED, 1, None)
    assert [r.pk for r in sent] == [revision.pk]
    assert list(revision.runs.values_list("outcome", flat=True)) == [GradingRun.Outcome.ABANDONED]


def test_it_leaves_another_workers_gradings_alone():
    revision = running("grader-2@host-a")

    taken = grading_state.revisions_orphaned_requeue(
        worker="grader-1@host-a", started_before=timezone.now(), send=lambda revision: None
    )

    assert taken == 0
    revision.refresh_from_db()
    assert revision.state == Revision.State.RUNNING


def test_it_leaves_alone_what_this_process_started_itself():
    # A task taken between the worker's start and its ready signal is this process's own, not an orphan.
    revision = running("grader-1@host-a", started_ago=timedelta(seconds=0))

    taken = grading_state.revisions_orphaned_requeue(
        worker="grader-1@host-a", started_before=timezone.now() - timedelta(seconds=30), send=lambda revision: None
    )

    assert taken == 0
    revision.refresh_from_db()
    assert revision.state == Revision.State.RUNNING


def test_a_worker_without_a_name_takes_back_nothing():
    running("")

    assert grading_state.revisions_orphaned_requeue(worker="", started_before=timezone.now(), send=print) == 0
