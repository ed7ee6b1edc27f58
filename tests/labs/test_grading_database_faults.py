"""What chaos runs found: the database going away mid-grading, and a run the sweeper gave up on finishing late.
No Docker: the orchestrator's steps around the database are exercised with the sandbox step replaced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from labs.errors import PlatformError
from labs.grading import orchestrator
from labs.grading import state as grading_state
from labs.grading.scoring import Score
from labs.models import GradingRun, Revision
from tests.labs.factories import make_queued_revision

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_database_restart_mid_grading_requeues_the_revision_at_once(monkeypatch):
    revision = make_queued_revision()

    def database_goes_away(revision, run):
        # What a PostgreSQL restart does to a worker's open connection: Django still holds it, and every query on
        # it fails from now on.
        connection.connection.close()
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(orchestrator, "_prepare", database_goes_away)

    with pytest.raises(PlatformError):  # ours: the task retries it
        orchestrator.grade_revision(revision_id=revision.pk, worker="test-worker")

    revision.refresh_from_db()
    assert revision.state == Revision.State.QUEUED  # not left running until the sweeper's deadline
    assert revision.score is None
    (run,) = revision.runs.all()
    assert run.outcome == GradingRun.Outcome.ERROR
    assert "OperationalError" in run.error_detail


def test_a_database_still_down_is_our_error_for_the_task_to_retry(monkeypatch):
    revision = make_queued_revision()

    def database_stays_down(revision, run):
        monkeypatch.setattr(connection, "ensure_connection", _refuse_always)
        connection.close()
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(orchestrator, "_prepare", database_stays_down)

    with pytest.raises(PlatformError, match="database is unreachable"):
        orchestrator.grade_revision(revision_id=revision.pk, worker="test-worker")
    monkeypatch.undo()

    revision.refresh_from_db()
    assert revision.state == Revision.State.RUNNING  # the sweeper requeues it once its deadline passes
    assert revision.score is None


def test_a_run_the_sweeper_abandoned_never_stores_its_verdict_over_the_next_attempt():
    revision = make_queued_revision()
    claimed = grading_state.revision_claim(revision_id=revision.pk)
    first = grading_state.run_start(revision=claimed, worker="worker-that-stalled")

    # The first worker stalls past its deadline: the sweeper abandons its run and requeues the revision, and
    # another worker claims it again before the first one wakes up.
    grading_state.revisions_sweep(send=lambda revision: None, now=timezone.now() + timedelta(days=1))
    reclaimed = grading_state.revision_claim(revision_id=revision.pk)
    assert reclaimed is not None

    late = grading_state.revision_finish(revision=claimed, run=first, score=Score(points=0.0, max_points=1.0))

    assert late is False
    revision.refresh_from_db()
    assert (revision.state, revision.score) == (Revision.State.RUNNING, None)
    second = grading_state.run_start(revision=reclaimed, worker="healthy-worker")
    assert grading_state.revision_finish(revision=reclaimed, run=second, score=Score(points=1.0, max_points=1.0))
    revision.refresh_from_db()
    assert (revision.state, revision.score) == (Revision.State.GRADED, 1)
    assert list(revision.runs.order_by("attempt").values_list("outcome", flat=True)) == ["abandoned", "graded"]


def test_a_run_abandoned_before_any_new_claim_stores_no_verdict():
    revision = make_queued_revision()
    claimed = grading_state.revision_claim(revision_id=revision.pk)
    run = grading_state.run_start(revision=claimed, worker="worker-that-stalled")
    GradingRun.objects.filter(pk=run.pk).update(outcome=GradingRun.Outcome.ABANDONED)  # the sweeper's first step

    assert grading_state.revision_finish(revision=claimed, run=run, score=Score(points=1.0, max_points=1.0)) is False
    revision.refresh_from_db()
    assert revision.score is None


def _refuse_always():
    raise OperationalError("could not connect to server: Connection refused")
