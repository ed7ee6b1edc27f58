"""Notifications: the loop tells the learner when grading finishes and when a reviewer decides, in the app (an
unread count in the header, a list, mark read) and by mail to a verified address only.

Personas: a learner (with a verified address, an unverified one, or none), a reviewer, another user, and an
anonymous visitor.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from courses.models import Enrollment
from labs.models import LabWork, Review, Revision
from labs.reviews import loop
from notifications.models import EmailAddress, Notification
from notifications.selectors import PAGE_SIZE
from notifications.services import notification_send
from tests.labs.factories import enroll, loop_record, make_course, make_lab, make_user

pytestmark = pytest.mark.django_db

ADDRESS = "learner@example.com"


@pytest.fixture
def world():
    course = make_course()
    lab = make_lab(course=course, title="The quote service")
    learner = make_user("learner")
    enroll(learner, course)
    reviewer = make_user("reviewer")
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    return {"course": course, "lab": lab, "learner": learner, "reviewer": reviewer, "other": make_user("other")}


def verified(user, email: str = ADDRESS) -> EmailAddress:
    return EmailAddress.objects.create(user=user, email=email, verified_at=timezone.now())


def graded_revision(lab, user) -> Revision:
    number = Revision.objects.filter(lab=lab, user=user).count() + 1
    return Revision.objects.create(
        lab=lab, user=user, number=number, state="graded", tree_sha256="a" * 64, score=Decimal(5), max_score=Decimal(5)
    )


def decide(lab, learner, reviewer, decision: str) -> None:
    work = LabWork.objects.select_related("lab", "user", "revision").get(lab=lab, user=learner)
    loop.work_claim(work=work, reviewer=reviewer)
    review = Review.objects.create(
        revision=work.revision,
        reviewer=reviewer,
        decision=decision,
        rubric_scores={"overall": 7},
        rubric_total=Decimal(7),
        comment="Name the health check endpoint.",
        submitted_at=timezone.now(),
    )
    work.refresh_from_db()
    loop.work_review_decide(work=work, review=review, reviewer=reviewer)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- what the loop sends ---------------------------------------------------------------------------------------


def test_grading_finished_makes_one_notification_and_one_mail_to_a_verified_address(
    world, django_capture_on_commit_callbacks
):
    verified(world["learner"])
    with django_capture_on_commit_callbacks(execute=True):
        revision = graded_revision(world["lab"], world["learner"])
        loop_record(revision, notify=True)

    notification = Notification.objects.get()
    assert (notification.user, notification.kind) == (world["learner"], "grading_finished")
    assert notification.url == f"/revisions/{revision.pk}/"
    assert notification.emailed_at is not None
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [ADDRESS]
    assert "The quote service: revision 1 graded" in mail.outbox[0].subject
    assert f"http://127.0.0.1:8000/revisions/{revision.pk}/" in mail.outbox[0].body


@pytest.mark.parametrize(("decision", "kind"), [("changes_requested", "changes_requested"), ("approved", "approved")])
def test_a_review_decision_makes_one_notification_and_one_mail(
    world, django_capture_on_commit_callbacks, decision, kind
):
    verified(world["learner"])
    loop_record(graded_revision(world["lab"], world["learner"]))

    with django_capture_on_commit_callbacks(execute=True):
        decide(world["lab"], world["learner"], world["reviewer"], decision)

    notification = Notification.objects.get()
    assert (notification.user, notification.kind) == (world["learner"], kind)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [ADDRESS]
    assert "Name the health check endpoint." in mail.outbox[0].body


def test_nothing_is_mailed_to_an_unverified_address_or_to_a_user_without_one(world, django_capture_on_commit_callbacks):
    EmailAddress.objects.create(user=world["learner"], email=ADDRESS)
    world["learner"].email = ADDRESS  # what Django's password reset uses: never enough for notifications
    world["learner"].save()
    other_lab = make_lab(course=world["course"])
    with django_capture_on_commit_callbacks(execute=True):
        loop_record(graded_revision(world["lab"], world["learner"]), notify=True)
        loop_record(graded_revision(other_lab, world["other"]), notify=True)

    assert Notification.objects.count() == 2
    assert Notification.objects.filter(emailed_at__isnull=False).count() == 0
    assert mail.outbox == []


# --- in the app ------------------------------------------------------------------------------------------------


def test_the_header_shows_the_unread_count_from_the_shared_cache_once_counted(world):
    for n in range(3):
        notification_send(user=world["learner"], kind="grading_finished", title=f"Graded {n}", url="/")
    notification_send(user=world["other"], kind="grading_finished", title="Not yours", url="/")
    client = client_for(world["learner"])
    with CaptureQueriesContext(connection) as first:
        client.get("/")

    with CaptureQueriesContext(connection) as queries:
        html = client.get("/").content.decode()

    assert '<span class="nav-count">3<span class="visually-hidden"> unread</span></span>' in html
    assert sum("notifications_notification" in q["sql"] for q in first.captured_queries) == 1
    assert sum("notifications_notification" in q["sql"] for q in queries.captured_queries) == 0  # test_header_cache.py


def test_an_anonymous_visitor_costs_no_notification_query():
    with CaptureQueriesContext(connection) as queries:
        html = Client().get("/").content.decode()
    assert "nav-count" not in html
    assert not any("notifications_notification" in q["sql"] for q in queries.captured_queries)


def test_the_list_is_paginated_newest_first(world):
    for n in range(PAGE_SIZE + 2):
        notification_send(user=world["learner"], kind="grading_finished", title=f"Graded number {n}", url="/")
    client = client_for(world["learner"])

    first = client.get("/notifications/").content.decode()
    second = client.get("/notifications/", {"page": 2}).content.decode()

    assert f"Graded number {PAGE_SIZE + 1}<" in first and "Graded number 0<" not in first
    assert "Graded number 0<" in second and "Page 2 of 2" in second


def test_opening_a_notification_marks_it_read_and_goes_to_its_page(world):
    notification = notification_send(
        user=world["learner"], kind="approved", title="Approved", url="/revisions/7/#reviews"
    )

    response = client_for(world["learner"]).get(f"/notifications/{notification.pk}/")

    assert response.status_code == 302 and response["Location"] == "/revisions/7/#reviews"
    notification.refresh_from_db()
    assert notification.read_at is not None


def test_mark_all_read_marks_only_the_users_own(world):
    notification_send(user=world["learner"], kind="approved", title="Mine", url="/")
    notification_send(user=world["other"], kind="approved", title="Theirs", url="/")
    client = client_for(world["learner"])

    assert client.get("/notifications/read-all/").status_code == 405
    response = client.post("/notifications/read-all/")

    assert response.status_code == 302
    assert not Notification.objects.filter(user=world["learner"], read_at__isnull=True).exists()
    assert Notification.objects.filter(user=world["other"], read_at__isnull=True).count() == 1
    assert "nav-count" not in client.get("/notifications/").content.decode()


def test_another_users_notification_is_404_and_stays_unread(world):
    notification = notification_send(user=world["other"], kind="approved", title="Theirs", url="/")

    assert client_for(world["learner"]).get(f"/notifications/{notification.pk}/").status_code == 404
    assert client_for(world["learner"]).get("/notifications/999999/").status_code == 404
    anonymous = Client().get(f"/notifications/{notification.pk}/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    notification.refresh_from_db()
    assert notification.read_at is None
    assert "Theirs" not in client_for(world["learner"]).get("/notifications/").content.decode()


@pytest.mark.parametrize(
    "url", ["https://evil.example/", "//evil.example/", "/\\evil.example/", "javascript:alert(1)", "evil.example"]
)
def test_an_outside_url_is_never_redirected_to(world, url):
    with pytest.raises(ValueError, match="path on this site"):
        notification_send(user=world["learner"], kind="approved", title="Hostile", url=url)
    # A row written some other way is still never followed off the site.
    stored = Notification.objects.create(user=world["learner"], kind="approved", title="Hostile", url=url)

    response = client_for(world["learner"]).get(f"/notifications/{stored.pk}/")

    assert response.status_code == 302 and response["Location"] == "/notifications/"


def test_a_user_without_a_verified_address_is_told_how_to_get_mail(world):
    client = client_for(world["learner"])
    assert "Add one" in client.get("/notifications/").content.decode()
    EmailAddress.objects.create(
        user=world["learner"], email=ADDRESS, verification_sent_at=timezone.now() - timedelta(hours=1)
    )
    assert "Send the link again" in client.get("/notifications/").content.decode()
    EmailAddress.objects.filter(user=world["learner"]).update(verified_at=timezone.now())
    page = client.get("/notifications/").content.decode()
    assert "Add one" not in page and "Send the link again" not in page
