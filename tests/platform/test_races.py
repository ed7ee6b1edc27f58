"""Races that only a real database shows: two threads, each with its own connection, released together by a
barrier, do the same thing at once; exactly one may win. Each race is repeated a few times. These tests pass on
SQLite (its IMMEDIATE transactions serialise writers) and on PostgreSQL (row locks and conditional updates),
where ./bin/test runs them in its second pass."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from django.db import connection, connections, transaction

from courses.models import Enrollment
from labs.errors import SubmissionTooSoon
from labs.grading.state import revision_claim
from labs.models import LabWork, Revision
from labs.reviews import loop
from labs.reviews.loop import WorkStateRefused
from labs.services.submissions import revision_submit
from tests.labs.factories import DEFAULT_SPEC, enroll, make_course, make_lab, make_user
from tests.labs.test_uploads import GOOD, make_zip

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 4
# Only there so a deadlock fails the test instead of hanging the suite; no outcome depends on timing.
HANG_GUARD_SECONDS = 120


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None


def race(*calls: Callable[[], Any]) -> list[Outcome]:
    """Run each call in a thread of its own, all released at the same moment; their outcomes, in order."""
    barrier = threading.Barrier(len(calls))
    outcomes = [Outcome() for _ in calls]

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            connection.ensure_connection()  # this thread's own connection, opened before the start line
            barrier.wait(timeout=HANG_GUARD_SECONDS)
            outcomes[index].value = call()
        except BaseException as error:  # the test reads every outcome
            outcomes[index].error = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=HANG_GUARD_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a racer never finished (deadlock?)"
    return outcomes


@pytest.fixture
def sent(settings, tmp_path, monkeypatch) -> list[int]:
    """No worker runs: revisions handed to the queue are recorded instead."""
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    published: list[int] = []
    monkeypatch.setattr("labs.services.grading.revision_send", lambda revision: published.append(revision.pk))
    return published


def claim_as(*, work_id: int, reviewer) -> LabWork:
    """A reviewer's claim as the review page makes it: on the work as read by this connection."""
    return loop.work_claim(work=LabWork.objects.get(pk=work_id), reviewer=reviewer)


def test_it_stores_one_of_two_simultaneous_submits_under_a_cooldown_and_refuses_the_other(sent):
    for _ in range(ROUNDS):
        lab = make_lab(cooldown_seconds=600)
        learner = make_user()
        enroll(learner, lab.course)

        outcomes = race(
            partial(revision_submit, lab=lab, user=learner, upload=make_zip(GOOD)),
            partial(revision_submit, lab=lab, user=learner, upload=[("service.py", GOOD[1])]),
        )

        stored = [o.value for o in outcomes if o.error is None]
        refused = [o.error for o in outcomes if o.error is not None]
        assert len(stored) == 1, [o.error for o in outcomes]
        assert len(refused) == 1 and isinstance(refused[0], SubmissionTooSoon), refused
        assert "cooldown of 600 seconds" in refused[0].hint
        assert list(Revision.objects.filter(lab=lab, user=learner).values_list("pk", "number")) == [(stored[0].pk, 1)]
        assert sent.count(stored[0].pk) == 1
        assert Enrollment.objects.filter(user=learner, course=lab.course).count() == 1


def test_it_gives_a_queued_revision_to_exactly_one_of_two_workers_claiming_it(sent):
    for _ in range(ROUNDS):
        revision = revision_submit(lab=make_lab(), user=make_user(), upload=make_zip(GOOD))

        claim = partial(revision_claim, revision_id=revision.pk)
        outcomes = race(claim, claim)

        assert [o.error for o in outcomes] == [None, None]
        claimed = [o.value for o in outcomes if o.value is not None]
        assert len(claimed) == 1
        assert claimed[0].pk == revision.pk and claimed[0].state == Revision.State.RUNNING
        revision.refresh_from_db()
        assert revision.state == Revision.State.RUNNING and revision.deadline_at is not None


def test_it_gives_work_to_exactly_one_of_two_reviewers_claiming_it():
    spec = {**DEFAULT_SPEC, "review": {"rubric": [{"id": "clarity", "title": "Clear code", "points": 10}]}}
    for _ in range(ROUNDS):
        course = make_course()
        lab = make_lab(course=course, spec=spec)
        learner, first, second = make_user(), make_user(), make_user()
        enroll(learner, course)
        enroll(first, course, Enrollment.Role.REVIEWER)
        enroll(second, course, Enrollment.Role.REVIEWER)
        with transaction.atomic():  # as submitting and grading call the loop's hooks
            revision = Revision.objects.create(lab=lab, user=learner, number=1, tree_sha256="a" * 64, files=[])
            loop.work_revision_submitted(revision=revision)
        with transaction.atomic():
            Revision.objects.filter(pk=revision.pk).update(
                state=Revision.State.GRADED, score=Decimal(10), max_score=Decimal(15)
            )
            revision.refresh_from_db()
            work = loop.work_revision_graded(revision=revision)
        assert work.state == LabWork.State.AWAITING_REVIEW

        outcomes = race(
            partial(claim_as, work_id=work.pk, reviewer=first), partial(claim_as, work_id=work.pk, reviewer=second)
        )

        winners = [o.value for o in outcomes if o.error is None]
        refused = [o.error for o in outcomes if o.error is not None]
        assert len(winners) == 1, refused
        assert len(refused) == 1 and isinstance(refused[0], WorkStateRefused), refused
        work.refresh_from_db()
        assert work.state == LabWork.State.IN_REVIEW
        assert work.claimed_by_id == winners[0].claimed_by_id
        assert work.events.filter(kind="claimed").count() == 1
