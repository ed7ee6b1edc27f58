"""The logged-in lesson page: one shell per lesson and import, shared by every logged-in reader, filled per request
with that reader's own parts (account links, CSRF token, completion, graded quiz attempts, marks). No reader ever
sees another's, whichever of them built the shell."""

import json
import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from courses import selectors
from courses.models import Course, Enrollment, Lesson, LessonMark, LessonProgress, QuizAttempt
from notifications.models import Notification
from tests.courses import factories
from tests.courses.test_reader_marks import MARKABLE_HTML

pytestmark = pytest.mark.django_db

CSRF_VALUES = re.compile(
    r'(?:name="csrf-token" content|name="csrfmiddlewaretoken" value)="([^"]+)"|"X-CSRFToken": "([^"]+)"'
)


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def lesson_url(lesson: Lesson) -> str:
    return reverse("lesson", args=[lesson.course.slug, lesson.unit.slug, lesson.slug])


def csrf_values(body: str) -> set[str]:
    return {meta or header for meta, header in CSRF_VALUES.findall(body)}


@pytest.fixture
def lesson(db):
    """A lesson of an imported course with lesson facts (so the "Completed" status has a place), something to
    mark and a graded quiz."""
    cache.clear()
    course = factories.course_create(slug="ship", content_version="abc123", imported_at=timezone.now())
    unit = factories.unit_create(course=course, position=1)
    factories.lesson_create(unit=unit, position=1)
    lesson = factories.lesson_create(
        unit=unit, position=2, slug="pinning", objective="Pin an image.", html="<p>Pinning.</p>" + MARKABLE_HTML
    )
    factories.lesson_create(unit=unit, position=3)
    factories.graded_quiz_create(lesson=lesson, key="final", max_attempts=3)
    yield Lesson.objects.get(pk=lesson.pk)
    cache.clear()


@pytest.fixture
def ada(lesson):
    """A learner who did everything: completed the lesson, tried the quiz, opened answers, has unread news."""
    user = factories.user_create(username="ada-the-learner")
    LessonProgress.objects.create(user=user, lesson=lesson)
    QuizAttempt.objects.create(quiz=lesson.quizzes.get(), user=user, answers={"0": [1]}, score=1, max_score=2)
    LessonMark.objects.create(user=user, lesson=lesson, key="quiz:check-yourself", value=["q2"])
    Notification.objects.create(user=user, kind=Notification.Kind.APPROVED, title="Approved", url="/")
    return user


@pytest.fixture
def bob(lesson):
    return factories.user_create(username="bob-the-newcomer")


def ada_sees_her_own(body: str) -> None:
    assert "ada-the-learner" in body
    assert "✓ You completed this lesson." in body and "✓ Completed" in body
    assert "Your score: 1 / 2" in body
    assert '"quiz:check-yourself": ["q2"]' in body
    assert '<span class="nav-count">1<' in body


def bob_sees_nothing_of_ada(body: str) -> None:
    assert "bob-the-newcomer" in body
    assert "ada-the-learner" not in body
    assert "You completed this lesson" not in body and "✓ Completed" not in body
    assert "Mark complete" in body
    assert "Your score" not in body
    assert '<script id="reader-marks" type="application/json">{}</script>' in body
    assert "nav-count" not in body


@pytest.mark.parametrize("first", ["ada", "bob"])
def test_two_learners_each_see_only_their_own_parts_whoever_built_the_shell(lesson, ada, bob, first):
    readers = {"ada": logged_in(ada), "bob": logged_in(bob)}
    order = [first, "bob" if first == "ada" else "ada"]
    bodies = {name: readers[name].get(lesson_url(lesson)).content.decode() for name in order}
    ada_sees_her_own(bodies["ada"])
    bob_sees_nothing_of_ada(bodies["bob"])
    assert not csrf_values(bodies["ada"]) & csrf_values(bodies["bob"])


def test_the_second_reader_is_served_from_the_shell(lesson, ada, bob, django_assert_num_queries):
    logged_in(ada).get(lesson_url(lesson))
    client = logged_in(bob)
    client.get(reverse("catalog"))  # loads the session once, as a reader arriving from another page has
    # session, user, course version, progress and marks (one query), quiz attempts: no lesson, no quiz row, no
    # previous or next, and the header's review-queue link and unread count come from the shared cache
    # (tests/test_header_cache.py)
    with django_assert_num_queries(5):
        body = client.get(lesson_url(lesson)).content.decode()
    bob_sees_nothing_of_ada(body)


def test_every_csrf_token_on_the_page_is_the_sessions_and_lets_its_forms_post(lesson, bob):
    client = logged_in(bob, enforce_csrf_checks=True)
    logged_in(factories.user_create()).get(lesson_url(lesson))  # someone else built the shell
    body = client.get(lesson_url(lesson)).content.decode()
    tokens = csrf_values(body)
    # The meta tag, htmx's header, the log-out form, the completion form and the quiz form share one token.
    assert len(tokens) == 1
    assert len(CSRF_VALUES.findall(body)) == 5
    token = tokens.pop()
    complete = reverse("lesson-complete", args=["ship", "unit-1", "pinning"])
    assert client.post(complete, {"completed": "1", "csrfmiddlewaretoken": token}).status_code == 302
    assert LessonProgress.objects.filter(user=bob, lesson=lesson).exists()
    quiz = reverse("quiz-submit", args=["ship", "unit-1", "pinning", "final"])
    response = client.post(quiz, {"q0": "1", "q1": ["0", "2"]}, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 200
    assert QuizAttempt.objects.filter(user=bob).count() == 1


def test_a_reviewer_and_a_staff_member_see_their_links_and_learners_do_not(lesson, bob):
    staff = factories.user_create(username="staff-member", is_staff=True)
    reviewer = factories.user_create(username="the-reviewer")
    factories.enrollment_create(user=reviewer, course=lesson.course, role=Enrollment.Role.REVIEWER)
    admin_link = f'href="{reverse("admin:index")}"'
    queue_link = f'href="{reverse("reviews:queue")}"'
    for order in ((staff, reviewer, bob), (bob, reviewer, staff)):
        cache.clear()
        bodies = {user.username: logged_in(user).get(lesson_url(lesson)).content.decode() for user in order}
        assert admin_link in bodies["staff-member"] and queue_link in bodies["staff-member"]
        assert queue_link in bodies["the-reviewer"] and admin_link not in bodies["the-reviewer"]
        assert queue_link not in bodies["bob-the-newcomer"] and admin_link not in bodies["bob-the-newcomer"]
        assert "staff-member" not in bodies["bob-the-newcomer"] + bodies["the-reviewer"]


def test_a_flash_message_shows_on_the_page_after_a_refused_quiz(lesson, bob):
    client = logged_in(bob)
    client.get(lesson_url(lesson))  # the shell is cached
    quiz = reverse("quiz-submit", args=["ship", "unit-1", "pinning", "final"])
    response = client.post(quiz, {"q0": "1"}, follow=True)
    assert "Question 2 has no answer." in response.content.decode()
    assert "Question 2 has no answer." not in client.get(lesson_url(lesson)).content.decode()  # shown once


def test_a_new_import_rebuilds_the_shell_and_a_changed_row_without_one_does_not(lesson, bob):
    client = logged_in(bob)
    client.get(lesson_url(lesson))
    Lesson.objects.filter(pk=lesson.pk).update(title="Retitled without an import")
    assert "Retitled without an import" not in client.get(lesson_url(lesson)).content.decode()
    Course.objects.filter(pk=lesson.course_id).update(imported_at=timezone.now() + timedelta(seconds=1))
    assert "Retitled without an import" in client.get(lesson_url(lesson)).content.decode()


def test_lesson_text_that_looks_like_a_slot_is_shown_as_written(lesson, ada):
    # Slots carry a nonce drawn when the shell is built: text guessing the shape never receives a reader's parts.
    lookalike = f"s{'0' * 32}-csrf- s{'0' * 32}-nav-"
    Lesson.objects.filter(pk=lesson.pk).update(html=f"<p>{lookalike}</p>" + lesson.html)
    body = logged_in(ada).get(lesson_url(lesson)).content.decode()
    assert f"<p>{lookalike}</p>" in body
    assert body.count("ada-the-learner") == 1


def test_queries_stay_constant_as_lessons_attempts_and_marks_grow(django_assert_num_queries):
    counts = []
    for size in (1, 20):
        cache.clear()
        course = factories.course_with_lessons_create(
            units=2, lessons_per_unit=size + 2, content_version="v1", imported_at=timezone.now()
        )
        lesson = course.lessons.get(unit__position=2, position=2)
        lesson.html = MARKABLE_HTML
        lesson.save(update_fields=["html"])
        quizzes = [factories.graded_quiz_create(lesson=lesson, key=f"q{n}", max_attempts=None) for n in range(size)]
        user = factories.user_create()
        for quiz in quizzes:
            for _ in range(size):
                QuizAttempt.objects.create(quiz=quiz, user=user, answers={}, score=0, max_score=2)
        for n in range(size):
            LessonMark.objects.create(user=user, lesson=lesson, key=f"checklist:{n}", value=[0])
        client = logged_in(user)
        client.get(lesson_url(lesson))  # builds the shell
        # session, user, course version, progress and marks (one query), attempts (the header: the shared cache)
        with django_assert_num_queries(5) as captured:
            body = client.get(lesson_url(lesson)).content.decode()
        counts.append(len(captured.captured_queries))
        assert body.count("graded-quiz card") == size
        assert len(json.loads(re.search(r'"reader-marks" type="application/json">(.*?)</script>', body)[1])) == size
    assert counts[0] == counts[1]


# --- the plain-SQL reads behind the page (courses.selectors): the same answers as the ORM's ---------------------


@pytest.mark.parametrize("done", [True, False])
@pytest.mark.parametrize("with_marks", [True, False])
def test_it_reads_the_readers_progress_and_marks_in_one_query(lesson, bob, done, with_marks, django_assert_num_queries):
    if done:
        LessonProgress.objects.create(user=bob, lesson=lesson)
    LessonMark.objects.create(user=bob, lesson=lesson, key="quiz:b", value=["q2", "q1"])
    LessonMark.objects.create(user=bob, lesson=lesson, key="checklist:0", value=[0, 2])
    LessonMark.objects.create(user=bob, lesson=lesson, key="quiz:a", value={"nested": [1, "x"]})
    other = factories.user_create()
    LessonProgress.objects.create(user=other, lesson=lesson)
    LessonMark.objects.create(user=other, lesson=lesson, key="quiz:z", value=[9])
    with django_assert_num_queries(1):
        state = selectors.reader_state_get(lesson_id=lesson.pk, user=bob, with_marks=with_marks)
    assert state.done is done
    assert state.done == selectors.lesson_is_done(lesson_id=lesson.pk, user=bob)
    if with_marks:
        assert state.marks == selectors.reader_marks_get(lesson_id=lesson.pk, user=bob)
        assert list(state.marks) == ["checklist:0", "quiz:a", "quiz:b"]
        assert state.marks["quiz:a"] == {"nested": [1, "x"]}
    else:
        assert state.marks == {}


def test_it_reads_nothing_for_an_anonymous_reader(lesson, django_assert_num_queries):
    from django.contrib.auth.models import AnonymousUser

    with django_assert_num_queries(0):
        state = selectors.reader_state_get(lesson_id=lesson.pk, user=AnonymousUser(), with_marks=True)
    assert state == selectors.ReaderState(done=False, marks={})


def test_the_course_version_is_the_orms_and_changes_with_every_import(lesson):
    course = Course.objects.get(pk=lesson.course_id)
    version = selectors.course_version_get(course_slug=course.slug)
    assert version == selectors._course_version(course)
    assert version.startswith("abc123@")
    course.imported_at += timedelta(microseconds=1)
    course.save(update_fields=["imported_at"])
    assert selectors.course_version_get(course_slug=course.slug) not in (None, version)
    assert selectors.course_version_get(course_slug="no-such-course") is None
    never = factories.course_create(slug="never-imported")
    assert selectors.course_version_get(course_slug=never.slug) is None
