"""Queues that stay fair under load: a long lab's grading goes to `grading-long`, a short one's to `celery`; a
learner has at most one grading in flight, the older submission first, and the next starts when one ends. The
last test grades two quick submissions of one learner with the real worker in Docker."""

from __future__ import annotations

import copy
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.utils import timezone

from labs import tasks
from labs.errors import PlatformError
from labs.grading import state as grading_state
from labs.grading.scoring import Score
from labs.models import GradingRun, LabSelfTest, Revision
from tests.labs.conftest import HELLO_LAB_DIR, REPO_ROOT, wait_for_state
from tests.labs.factories import DEFAULT_SPEC, make_lab, make_user

pytestmark = pytest.mark.django_db


def lab_with_wall(seconds: int, **fields):
    spec = copy.deepcopy(DEFAULT_SPEC)
    spec["limits"]["wall_seconds"] = seconds
    return make_lab(spec=spec, **fields)


def queued(lab, user, **fields) -> Revision:
    number = Revision.objects.filter(lab=lab, user=user).count() + 1
    return Revision.objects.create(
        lab=lab,
        user=user,
        number=number,
        tree_sha256=f"{number:064x}",
        files=[{"path": "service.py", "size": 12, "sha256": "b" * 64}],
        total_bytes=12,
        queued_at=timezone.now(),
        **fields,
    )


def finish(revision: Revision) -> None:
    run = grading_state.run_start(revision=revision, worker="test-worker")
    assert grading_state.revision_finish(revision=revision, run=run, score=Score(points=1.0, max_points=1.0))


def claim_at_once(revision_ids: list[int]) -> dict[int, Revision | None]:
    """Each revision claimed by a thread of its own (its own connection), all released together."""
    barrier = threading.Barrier(len(revision_ids))
    claimed: dict[int, Revision | None] = {}

    def claim(revision_id: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=60)  # a guard against a hang, not a threshold
            claimed[revision_id] = grading_state.revision_claim(revision_id=revision_id)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(revision_id,)) for revision_id in revision_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return claimed


@pytest.fixture
def published(monkeypatch) -> list[tuple[int, str]]:
    """What revision_send publishes: (revision id, queue), with no broker."""
    sent: list[tuple[int, str]] = []

    def apply_async(*, args, queue, soft_time_limit, time_limit):
        assert soft_time_limit < time_limit
        sent.append((args[0], queue))

    monkeypatch.setattr(tasks.revision_grade, "apply_async", apply_async)
    return sent


# Routing


def test_it_publishes_a_long_labs_grading_on_grading_long_and_a_short_ones_on_celery(published, settings):
    settings.GRADING_LONG_LAB_SECONDS = 120
    learner = make_user()
    short, at_threshold, long = (queued(lab_with_wall(s), learner) for s in (30, 120, 121))

    for revision in (short, at_threshold, long):
        tasks.revision_send(revision)

    assert published == [(short.pk, "celery"), (at_threshold.pk, "celery"), (long.pk, "grading-long")]


def test_it_routes_by_the_wall_budget_clamped_to_the_platform_maximum(published, settings):
    settings.GRADING_LONG_LAB_SECONDS = 120
    settings.GRADING_MAX_WALL_SECONDS = 100
    revision = queued(lab_with_wall(600), make_user())

    tasks.revision_send(revision)

    assert published == [(revision.pk, "celery")]


@pytest.mark.parametrize("path", ["bin/run", "platform/deploy/entrypoint.sh", "tests/labs/conftest.py"])
def test_every_worker_consumes_every_queue(path):
    assert tasks.QUEUES == ("celery", "grading-long", "regrades")

    assert ",".join(tasks.QUEUES) in (REPO_ROOT / path).read_text()


# One grading in flight per learner


def test_it_refuses_a_learners_second_claim_while_the_first_runs_and_keeps_it_queued():
    ada = make_user()
    lab = lab_with_wall(60)
    first, second = queued(lab, ada), queued(lab, ada)

    running = grading_state.revision_claim(revision_id=first.pk)

    assert running is not None and running.state == "running"
    assert grading_state.revision_claim(revision_id=second.pk) is None
    second.refresh_from_db()
    assert second.state == "queued"
    assert second.deadline_at >= running.deadline_at  # the sweeper re-sends it only if the first stalls


def test_it_holds_a_learners_grading_on_another_lab_back_too():
    ada = make_user()
    first = queued(lab_with_wall(60), ada)
    other_lab = queued(lab_with_wall(60), ada)

    assert grading_state.revision_claim(revision_id=first.pk) is not None

    assert grading_state.revision_claim(revision_id=other_lab.pk) is None


def test_it_does_not_hold_another_learner_back():
    lab = lab_with_wall(60)
    ada = make_user()
    ada_first, _ada_second = queued(lab, ada), queued(lab, ada)
    bob = queued(lab, make_user())

    assert grading_state.revision_claim(revision_id=ada_first.pk) is not None

    assert grading_state.revision_claim(revision_id=bob.pk) is not None


def test_it_claims_a_learners_older_submission_first():
    ada = make_user()
    lab = lab_with_wall(60)
    older, newer = queued(lab, ada), queued(lab, ada)

    assert grading_state.revision_claim(revision_id=newer.pk) is None
    assert grading_state.revision_claim(revision_id=older.pk) is not None


def test_it_sends_the_waiting_revision_when_the_first_finishes(published):
    ada = make_user()
    lab = lab_with_wall(60)
    first, second, third = queued(lab, ada), queued(lab, ada), queued(lab, ada)
    running = grading_state.revision_claim(revision_id=first.pk)
    assert grading_state.revision_claim(revision_id=second.pk) is None

    finish(running)

    assert grading_state.revision_next_waiting(revision_id=first.pk) == second
    assert grading_state.revision_claim(revision_id=third.pk) is None  # behind the second
    assert grading_state.revision_claim(revision_id=second.pk) is not None


def test_the_grading_task_sends_the_learners_next_revision_when_its_grading_ends(published, monkeypatch):
    ada = make_user()
    lab = lab_with_wall(60)
    first, second = queued(lab, ada), queued(lab, ada)

    def grade(*, revision_id, worker):
        finish(grading_state.revision_claim(revision_id=revision_id))
        return "graded"

    monkeypatch.setattr(tasks, "grade_revision", grade)
    tasks.revision_grade(first.pk)

    assert published == [(second.pk, "celery")]


def test_a_refused_grading_task_sends_nothing(published):
    ada = make_user()
    lab = lab_with_wall(60)
    first, second = queued(lab, ada), queued(lab, ada)
    assert grading_state.revision_claim(revision_id=first.pk) is not None

    assert tasks.revision_grade(second.pk) is None

    assert published == []
    assert Revision.objects.get(pk=second.pk).state == "queued"


def test_the_sweeper_leaves_a_waiting_revision_alone_while_the_first_runs(published):
    ada = make_user()
    lab = lab_with_wall(60)
    first, second = queued(lab, ada), queued(lab, ada)
    grading_state.revision_queue_deadline_set(revision=second)
    running = grading_state.revision_claim(revision_id=first.pk)
    assert grading_state.revision_claim(revision_id=second.pk) is None

    swept = grading_state.revisions_sweep(
        send=tasks.revision_send, now=timezone.now() + timedelta(seconds=grading_state.QUEUED_RESEND_AFTER_S + 1)
    )
    assert swept == {"requeued": 0, "parked": 0, "resent": 0}

    # The first's worker died: past its deadline both come back, and the first is claimed again first.
    swept = grading_state.revisions_sweep(send=tasks.revision_send, now=running.deadline_at + timedelta(seconds=1))
    assert swept == {"requeued": 1, "parked": 0, "resent": 1}
    assert sorted(published) == [(first.pk, "celery"), (second.pk, "celery")]
    assert grading_state.revision_claim(revision_id=second.pk) is None
    assert grading_state.revision_claim(revision_id=first.pk) is not None


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_two_of_a_learners_revisions_at_once_start_only_one():
    for _ in range(3):
        ada = make_user()
        lab = lab_with_wall(60)
        first, second = queued(lab, ada), queued(lab, ada)
        claimed = claim_at_once([second.pk, first.pk])

        assert claimed[second.pk] is None and claimed[first.pk] is not None
        assert Revision.objects.filter(user=ada, state="running").count() == 1


def test_self_test_and_regrade_copies_are_not_limited():
    system = make_user("shipshape-selftest")
    lab = lab_with_wall(60)
    selftest = LabSelfTest.objects.create(lab=lab)
    one, two = queued(lab, system, selftest=selftest), queued(lab, system, selftest=selftest)

    assert grading_state.revision_claim(revision_id=one.pk) is not None
    assert grading_state.revision_claim(revision_id=two.pk) is not None


# Nothing lost when the first errors


def test_nothing_is_lost_when_the_first_grading_errors(published, monkeypatch):
    ada = make_user()
    lab = lab_with_wall(60)
    first, second = queued(lab, ada), queued(lab, ada)

    def grade_with_our_error(*, revision_id, worker):
        claimed = grading_state.revision_claim(revision_id=revision_id)
        run = grading_state.run_start(revision=claimed, worker=worker)
        grading_state.revision_error(revision=claimed, run=run, detail="docker went away")
        raise PlatformError("docker went away")

    monkeypatch.setattr(tasks, "grade_revision", grade_with_our_error)
    with pytest.raises(PlatformError):
        tasks.revision_grade(first.pk)

    # Back in the queue with a backoff (its task retries it): the second still waits behind it, nothing sent.
    assert Revision.objects.get(pk=first.pk).state == "queued"
    assert published == []
    assert grading_state.revision_claim(revision_id=second.pk) is None

    finish(grading_state.revision_claim(revision_id=first.pk))
    assert grading_state.revision_next_waiting(revision_id=first.pk) == second
    assert grading_state.revision_claim(revision_id=second.pk) is not None


def test_the_waiting_revision_goes_ahead_when_the_first_is_parked_for_staff(published):
    ada = make_user()
    lab = lab_with_wall(60)
    first, second = queued(lab, ada), queued(lab, ada)

    for _ in range(grading_state.MAX_ERRORS):
        claimed = grading_state.revision_claim(revision_id=first.pk)
        assert grading_state.revision_claim(revision_id=second.pk) is None
        run = grading_state.run_start(revision=claimed, worker="test-worker")
        grading_state.revision_error(revision=claimed, run=run, detail="docker went away")

    assert Revision.objects.get(pk=first.pk).state == "error"
    assert grading_state.revision_next_waiting(revision_id=first.pk) == second
    assert grading_state.revision_claim(revision_id=second.pk) is not None


# With the real worker


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_learners_two_quick_submissions_are_graded_one_after_the_other(celery_worker, lab_factory, submit):
    celery_worker.stop()
    celery_worker.start(concurrency=2)  # room for both at once: only the one-in-flight rule keeps them apart
    try:
        lab = lab_factory(HELLO_LAB_DIR)
        learner = make_user()
        first = submit(lab, HELLO_LAB_DIR / "examples" / "good", user=learner)
        second = submit(lab, HELLO_LAB_DIR / "examples" / "broken-output", user=learner)

        for revision in (first, second):
            wait_for_state(revision, {"graded", "failed", "error"}, timeout=300)
    finally:
        celery_worker.stop()
        celery_worker.start()

    assert (first.state, first.score, second.state) == ("graded", Decimal(10), "graded")
    first_run, second_run = GradingRun.objects.get(revision=first), GradingRun.objects.get(revision=second)
    assert second_run.started_at > first_run.results_stored_at
