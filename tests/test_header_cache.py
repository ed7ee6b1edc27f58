"""The header's review-queue link and unread count are kept per user in the shared cache
(config.context_processors.navigation), and every write that changes them shows on the very next page."""

from unittest import mock

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from config import context_processors
from courses.models import Course, Enrollment
from courses.services.learning import enrollment_create
from notifications.models import Notification
from notifications.services import notification_send, notifications_mark_all_read
from tests.courses import factories

pytestmark = pytest.mark.django_db

QUEUE_LINK = f'href="{reverse("reviews:queue")}"'


@pytest.fixture(autouse=True)
def shared_cache():
    caches["shared"].clear()  # locmem in tests (tests/platform/session_env.py), never Redis
    yield caches["shared"]
    caches["shared"].clear()


@pytest.fixture
def learner():
    return factories.user_create(username="lin-the-learner")


@pytest.fixture
def course():
    return factories.course_create(slug="ship")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def header(client: Client) -> str:
    return client.get(reverse("catalog")).content.decode()


def unread_badge(count: int) -> str:
    return f'<span class="nav-count">{count}<'


def header_queries(client: Client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("catalog"))
    return [
        q["sql"]
        for q in queries.captured_queries
        if "notifications_notification" in q["sql"] or "enrollment" in q["sql"]
    ]


def test_it_serves_the_header_from_the_shared_cache_once_read(learner):
    notification_send(user=learner, kind="grading_finished", title="Graded", url="/")
    client = logged_in(learner)
    assert header_queries(client)  # the first page reads the enrollment and the count
    assert header_queries(client) == []
    assert unread_badge(1) in header(client)


def test_it_shows_a_new_notification_on_the_next_page(learner):
    client = logged_in(learner)
    assert "nav-count" not in header(client)
    notification_send(user=learner, kind="grading_finished", title="Graded", url="/")
    assert unread_badge(1) in header(client)
    notification_send(user=learner, kind="grading_finished", title="Graded again", url="/")
    assert unread_badge(2) in header(client)


def test_it_drops_the_count_when_a_notification_is_opened_and_when_all_are_read(learner):
    first = notification_send(user=learner, kind="grading_finished", title="One", url="/")
    notification_send(user=learner, kind="grading_finished", title="Two", url="/")
    client = logged_in(learner)
    assert unread_badge(2) in header(client)
    client.get(reverse("notifications:open", args=[first.pk]))
    assert unread_badge(1) in header(client)
    notifications_mark_all_read(user=learner)
    assert "nav-count" not in header(client)


def test_it_follows_notifications_changed_or_deleted_outside_the_services(learner):
    notification = notification_send(user=learner, kind="grading_finished", title="One", url="/")
    client = logged_in(learner)
    assert unread_badge(1) in header(client)
    Notification.objects.get(pk=notification.pk).delete()  # the admin's delete
    assert "nav-count" not in header(client)


def test_it_shows_the_review_queue_link_once_a_role_grants_it_and_hides_it_once_taken_away(learner, course):
    client = logged_in(learner)
    enrollment_create(user=learner, course=course)
    assert QUEUE_LINK not in header(client)
    enrollment = Enrollment.objects.get(user=learner, course=course)
    enrollment.role = Enrollment.Role.REVIEWER  # the admin's list of enrollments edits the role in place
    enrollment.save()
    assert QUEUE_LINK in header(client)
    enrollment.role = Enrollment.Role.LEARNER
    enrollment.save()
    assert QUEUE_LINK not in header(client)


def test_it_shows_the_link_to_a_new_instructor_and_hides_it_when_their_enrollment_or_course_goes(learner, course):
    client = logged_in(learner)
    assert QUEUE_LINK not in header(client)
    enrollment_create(user=learner, course=course, role=Enrollment.Role.INSTRUCTOR)
    assert QUEUE_LINK in header(client)
    Enrollment.objects.filter(user=learner).delete()  # the admin's "delete selected"
    assert QUEUE_LINK not in header(client)
    factories.enrollment_create(user=learner, course=course, role=Enrollment.Role.REVIEWER)
    assert QUEUE_LINK in header(client)
    Course.objects.filter(pk=course.pk).delete()  # the enrollment goes with its course
    assert QUEUE_LINK not in header(client)


def test_it_reads_staff_off_the_user_so_losing_staff_hides_the_link_at_once(learner):
    client = logged_in(learner)
    learner.is_staff = True
    learner.save(update_fields=["is_staff"])
    assert QUEUE_LINK in header(client)
    learner.is_staff = False
    learner.save(update_fields=["is_staff"])
    assert QUEUE_LINK not in header(client)


def test_it_never_keeps_a_count_read_before_a_write_that_lands_meanwhile(learner):
    client = logged_in(learner)
    header(client)
    read = context_processors._header_facts_read

    def read_then_a_notification_arrives(user):
        facts = read(user)  # the count before the write...
        notification_send(user=learner, kind="grading_finished", title="Meanwhile", url="/")
        return facts  # ...is what this page stores

    notification_send(user=learner, kind="grading_finished", title="First", url="/")
    with mock.patch.object(context_processors, "_header_facts_read", read_then_a_notification_arrives):
        assert unread_badge(1) in header(client)
    assert unread_badge(2) in header(client)


def test_it_shows_the_lesson_page_header_from_the_same_cache(learner):
    course = factories.course_create(slug="lessons", content_version="v1", imported_at=timezone.now())
    lesson = factories.lesson_create(unit=factories.unit_create(course=course, position=1), position=1)
    url = reverse("lesson", args=[course.slug, lesson.unit.slug, lesson.slug])
    client = logged_in(learner)
    client.get(url)
    notification_send(user=learner, kind="grading_finished", title="Graded", url="/")
    enrollment_create(user=learner, course=course, role=Enrollment.Role.REVIEWER)
    body = client.get(url).content.decode()
    assert unread_badge(1) in body and QUEUE_LINK in body


def test_it_reads_the_database_when_the_shared_cache_does_not_answer(learner, shared_cache):
    notification_send(user=learner, kind="grading_finished", title="Graded", url="/")
    client = logged_in(learner)
    with (
        mock.patch.object(type(shared_cache), "get_many", side_effect=ConnectionError("redis is down")),
        mock.patch.object(type(shared_cache), "incr", side_effect=ConnectionError("redis is down")),
    ):
        assert unread_badge(1) in header(client)
        notification_send(user=learner, kind="grading_finished", title="Again", url="/")
        assert unread_badge(2) in header(client)


def test_two_users_given_the_same_id_never_share_cached_facts(learner):
    """Ids come back after a rolled-back transaction (tests do it all the time): the join date tells them apart."""
    notification_send(user=learner, kind="grading_finished", title="Graded", url="/")
    assert context_processors._header_facts(learner).unread == 1
    Notification.objects.update(read_at=timezone.now())  # no version bump: only the join date can tell them apart
    stand_in = type(learner).objects.get(pk=learner.pk)
    stand_in.date_joined = timezone.now()
    assert context_processors._header_facts(stand_in).unread == 0
    assert context_processors._header_facts(learner).unread == 0  # read again, not the first one's cached facts
