"""Hidden means hidden on every surface until the due date (or until an instructor reveals them, for a lab without
one): the revision page, its live status, the log, evidence, the API and the CLI. Staff always see everything."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from labs import cli
from labs.models import CheckResult, GradingRun, Revision
from labs.services.tokens import api_token_create

from .factories import enroll, make_lab, make_user

SECRETS = ("secret-tests", "SECRET_MESSAGE", "SECRET_EVIDENCE", "SECRET_LOG_LINE")


def graded_with_hidden_output(lab, learner, *, state: str = "graded", phase: str = "results_stored") -> Revision:
    revision = Revision.objects.create(
        lab=lab, user=learner, number=1, state=state, tree_sha256="a" * 64, score=Decimal(5), max_score=Decimal(15)
    )
    run = GradingRun.objects.create(
        revision=revision,
        attempt=1,
        phase=phase,
        check_position=1 if phase == "checks" else None,
        outcome="graded" if state == "graded" else "",
        log="== has-service [pass] service.py is present",
        hidden_log="== secret-tests [fail] SECRET_MESSAGE\n-- log\nSECRET_LOG_LINE",
    )
    CheckResult.objects.create(
        run=run, position=0, check_id="has-service", kind="files.required", category="correctness", status="pass",
        points=Decimal(5), max_points=Decimal(5), message="service.py is present",
    )  # fmt: skip
    CheckResult.objects.create(
        run=run, position=1, check_id="secret-tests", kind="tests.pytest", category="correctness", status="fail",
        points=Decimal(0), max_points=Decimal(10), message="SECRET_MESSAGE", evidence={"log": "SECRET_EVIDENCE"},
        hidden_until_due=True,
    )  # fmt: skip
    return revision


def surfaces(user, revision) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    _token, raw = api_token_create(user=user)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return {
        "page": client.get(f"/revisions/{revision.pk}/").content.decode(),
        "live status": client.get(f"/revisions/{revision.pk}/status/").content.decode(),
        "api": api.get(f"/api/revisions/{revision.pk}").content.decode(),
    }


def leaks(texts: dict[str, str]) -> dict[str, list[str]]:
    return {name: [s for s in SECRETS if s in text] for name, text in texts.items() if any(s in text for s in SECRETS)}


@pytest.mark.django_db
def test_a_learner_sees_nothing_of_a_hidden_check_before_the_due_date():
    lab = make_lab(due_at=timezone.now() + timedelta(days=3))
    learner = make_user()
    revision = graded_with_hidden_output(lab, learner)

    texts = surfaces(learner, revision)

    assert leaks(texts) == {}
    assert "Hidden check 1" in texts["page"]
    assert '"id": "hidden-1", "status": "hidden"' in texts["api"]
    assert '"score": 5.0, "max_score": 5.0' in texts["api"]  # the visible checks' score only


@pytest.mark.django_db
def test_the_live_status_counts_checks_instead_of_naming_a_hidden_one():
    lab = make_lab(due_at=timezone.now() + timedelta(days=3))
    learner = make_user()
    revision = graded_with_hidden_output(lab, learner, state="running", phase="checks")

    texts = surfaces(learner, revision)

    assert leaks(texts) == {}
    assert "Check 2 of 2" in texts["live status"]
    assert '"phase": "check 2 of 2"' in texts["api"]


@pytest.mark.django_db(transaction=True)
def test_the_cli_shows_a_hidden_check_only_as_hidden(live_server, capsys):
    lab = make_lab(due_at=timezone.now() + timedelta(days=3))
    learner = make_user()
    revision = graded_with_hidden_output(lab, learner)
    _token, raw = api_token_create(user=learner)

    code = cli.main(["status", str(revision.pk)], env={"SHIPSHAPE_URL": live_server.url, "SHIPSHAPE_TOKEN": raw})

    out = capsys.readouterr().out
    assert code == 0
    assert [s for s in SECRETS if s in out] == []
    assert "hidden" in out


@pytest.mark.django_db
def test_the_learner_sees_hidden_checks_once_the_due_date_has_passed():
    lab = make_lab(due_at=timezone.now() - timedelta(minutes=1))
    learner = make_user()
    revision = graded_with_hidden_output(lab, learner)

    texts = surfaces(learner, revision)

    assert "SECRET_MESSAGE" in texts["page"] and "SECRET_LOG_LINE" in texts["page"]
    assert "secret-tests" in texts["api"]


@pytest.mark.django_db
def test_course_staff_always_see_hidden_checks_and_their_log():
    lab = make_lab(due_at=timezone.now() + timedelta(days=3))
    revision = graded_with_hidden_output(lab, make_user())
    reviewer = make_user()
    enroll(reviewer, lab.course, "reviewer")

    texts = surfaces(reviewer, revision)

    assert all(s in texts["page"] for s in ("secret-tests", "SECRET_MESSAGE", "SECRET_EVIDENCE", "SECRET_LOG_LINE"))


@pytest.mark.django_db
def test_a_lab_without_a_due_date_keeps_them_hidden_until_an_instructor_reveals_them():
    lab = make_lab()
    learner, instructor = make_user(), make_user()
    enroll(instructor, lab.course, "instructor")
    revision = graded_with_hidden_output(lab, learner)
    assert leaks(surfaces(learner, revision)) == {}

    client = Client()
    client.force_login(instructor)
    lab_page = client.get(f"/courses/{lab.course.slug}/labs/{lab.slug}/").content.decode()
    assert "Reveal hidden checks to learners now" in lab_page
    response = client.post(f"/courses/{lab.course.slug}/labs/{lab.slug}/reveal-hidden/")

    assert response.status_code == 302
    assert "SECRET_MESSAGE" in surfaces(learner, revision)["page"]


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["learner", "reviewer", "outsider"])
def test_only_instructors_may_reveal_hidden_checks(persona):
    lab = make_lab()
    user = make_user()
    if persona != "outsider":
        enroll(user, lab.course, persona)
    client = Client()
    client.force_login(user)

    response = client.post(f"/courses/{lab.course.slug}/labs/{lab.slug}/reveal-hidden/")

    assert response.status_code == 404
    lab.refresh_from_db()
    assert lab.hidden_revealed_at is None


@pytest.mark.django_db
def test_a_run_that_ended_in_our_error_shows_the_learner_nothing_of_it():
    lab = make_lab(due_at=timezone.now() - timedelta(minutes=1))
    learner = make_user()
    revision = graded_with_hidden_output(lab, learner, state="queued")
    GradingRun.objects.filter(revision=revision).update(outcome="error", phase="error", error_detail="TRACEBACK_TEXT")

    texts = surfaces(learner, revision)

    assert all("has-service" not in text and "TRACEBACK_TEXT" not in text for text in texts.values())


@pytest.mark.django_db
def test_an_instructor_grades_a_revision_that_needs_attention_again(monkeypatch):
    sent = []
    monkeypatch.setattr("labs.services.grading.revision_send", sent.append)
    lab = make_lab()
    instructor, learner = make_user(), make_user()
    enroll(instructor, lab.course, "instructor")
    revision = graded_with_hidden_output(lab, learner, state="error")
    Revision.objects.filter(pk=revision.pk).update(error_count=5)
    client = Client()
    client.force_login(learner)
    assert client.post(f"/revisions/{revision.pk}/grade-again/").status_code == 404
    client.force_login(instructor)
    assert "Grade again" in client.get(f"/revisions/{revision.pk}/").content.decode()

    client.post(f"/revisions/{revision.pk}/grade-again/")

    revision.refresh_from_db()
    assert (revision.state, revision.error_count) == ("queued", 0)
    assert [r.pk for r in sent] == [revision.pk]
