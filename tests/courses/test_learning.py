import pytest
from django.contrib.auth.models import AnonymousUser

from courses import selectors
from courses.models import Enrollment, LessonProgress, QuizAttempt
from courses.services import learning
from tests.courses import factories

pytestmark = pytest.mark.django_db


def test_lesson_complete_is_idempotent():
    course = factories.course_with_lessons_create(units=1, lessons_per_unit=1)
    user = factories.user_create()
    lesson = course.lessons.get()
    first = learning.lesson_complete(user=user, lesson=lesson)
    second = learning.lesson_complete(user=user, lesson=lesson)
    assert first.pk == second.pk
    assert first.completed_at == second.completed_at
    assert LessonProgress.objects.filter(user=user).count() == 1


def test_lesson_uncomplete_removes_only_that_users_progress():
    course = factories.course_with_lessons_create(units=1, lessons_per_unit=1)
    lesson = course.lessons.get()
    alice, bob = factories.user_create(), factories.user_create()
    learning.lesson_complete(user=alice, lesson=lesson)
    learning.lesson_complete(user=bob, lesson=lesson)
    learning.lesson_uncomplete(user=alice, lesson=lesson)
    learning.lesson_uncomplete(user=alice, lesson=lesson)  # a second call is harmless
    assert list(LessonProgress.objects.values_list("user__username", flat=True)) == [bob.username]


def test_course_progress_counts_per_unit_and_course(django_assert_num_queries):
    course = factories.course_with_lessons_create(units=2, lessons_per_unit=3)
    other_course = factories.course_with_lessons_create(units=1, lessons_per_unit=2)
    user = factories.user_create()
    unit1, unit2 = course.units.order_by("position")
    for lesson in unit1.lessons.all()[:2]:
        learning.lesson_complete(user=user, lesson=lesson)
    learning.lesson_complete(user=user, lesson=other_course.lessons.first())
    with django_assert_num_queries(2):
        progress = selectors.course_progress(user=user, course=course)
    assert (progress.units[unit1.id].done, progress.units[unit1.id].total) == (2, 3)
    assert (progress.units[unit2.id].done, progress.units[unit2.id].total) == (0, 3)
    assert (progress.done, progress.total, progress.percent) == (2, 6, 33)


def test_course_progress_takes_the_same_queries_for_a_big_course(django_assert_num_queries):
    course = factories.course_with_lessons_create(units=5, lessons_per_unit=10)
    user = factories.user_create()
    with django_assert_num_queries(2):
        progress = selectors.course_progress(user=user, course=course)
    assert (progress.done, progress.total) == (0, 50)


def test_course_progress_for_anonymous_shows_totals_only():
    course = factories.course_with_lessons_create(units=1, lessons_per_unit=2)
    progress = selectors.course_progress(user=AnonymousUser(), course=course)
    assert (progress.done, progress.total, progress.percent) == (0, 2, 0)


@pytest.fixture
def graded(db):
    course = factories.course_with_lessons_create(units=1, lessons_per_unit=1)
    quiz = factories.graded_quiz_create(lesson=course.lessons.get(), max_attempts=2)
    return quiz


ALL_RIGHT = {"0": [1], "1": [0, 2]}


def test_quiz_gives_full_credit_only_for_the_exact_set_of_correct_choices(graded):
    user = factories.user_create()
    attempt = learning.quiz_attempt_submit(user=user, quiz=graded, answers={"0": [1], "1": [0]})
    assert (attempt.score, attempt.max_score) == (1, 2)
    attempt = learning.quiz_attempt_submit(user=user, quiz=graded, answers={"0": ["1"], "1": ["2", "0"]})
    assert (attempt.score, attempt.max_score) == (2, 2)
    assert attempt.answers == ALL_RIGHT


def test_quiz_counts_a_superset_of_the_correct_choices_as_wrong(graded):
    user = factories.user_create()
    attempt = learning.quiz_attempt_submit(user=user, quiz=graded, answers={"0": [0], "1": [0, 1, 2]})
    assert attempt.score == 0


def test_quiz_attempt_enrolls_a_logged_in_user_as_learner(graded):
    user = factories.user_create()
    learning.quiz_attempt_submit(user=user, quiz=graded, answers=ALL_RIGHT)
    enrollment = Enrollment.objects.get(user=user, course=graded.lesson.course)
    assert enrollment.role == Enrollment.Role.LEARNER


def test_quiz_attempt_keeps_an_existing_role(graded):
    user = factories.user_create()
    factories.enrollment_create(user=user, course=graded.lesson.course, role=Enrollment.Role.REVIEWER)
    learning.quiz_attempt_submit(user=user, quiz=graded, answers=ALL_RIGHT)
    assert Enrollment.objects.get(user=user).role == Enrollment.Role.REVIEWER


def test_quiz_attempt_refuses_an_anonymous_user(graded):
    with pytest.raises(learning.QuizAttemptError, match="cannot take this quiz"):
        learning.quiz_attempt_submit(user=AnonymousUser(), quiz=graded, answers=ALL_RIGHT)
    assert QuizAttempt.objects.count() == 0


def test_quiz_attempt_stops_at_max_attempts(graded):
    user = factories.user_create()
    learning.quiz_attempt_submit(user=user, quiz=graded, answers=ALL_RIGHT)
    learning.quiz_attempt_submit(user=user, quiz=graded, answers=ALL_RIGHT)
    with pytest.raises(learning.QuizAttemptError, match="used all 2 attempts") as excinfo:
        learning.quiz_attempt_submit(user=user, quiz=graded, answers=ALL_RIGHT)
    assert excinfo.value.hint
    assert QuizAttempt.objects.filter(user=user).count() == 2


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"0": [1]}, "Question 2 has no answer"),
        ({"0": [7], "1": [0]}, "Question 1: that choice does not exist"),
        ({"0": ["x"], "1": [0]}, "Question 1: the answer is not a choice number"),
        ({"0": [0, 1], "1": [0]}, "Question 1 takes one answer"),
    ],
)
def test_quiz_attempt_rejects_malformed_answers_without_using_an_attempt(graded, answers, message):
    user = factories.user_create()
    with pytest.raises(learning.QuizAttemptError, match=message):
        learning.quiz_attempt_submit(user=user, quiz=graded, answers=answers)
    assert QuizAttempt.objects.count() == 0


def test_ungraded_quiz_takes_no_attempts(graded):
    graded.graded = False
    graded.save()
    with pytest.raises(learning.QuizAttemptError, match="not graded"):
        learning.quiz_attempt_submit(user=factories.user_create(), quiz=graded, answers=ALL_RIGHT)


def test_graded_quiz_view_never_carries_answers_before_an_attempt(graded):
    user = factories.user_create()
    view = selectors.graded_quiz_for_user(quiz=graded, user=user)
    assert view.review == []
    assert all("correct" not in choice for question in view.questions for choice in question["choices"])
    assert "explanation" not in str(view.questions)


def test_graded_quiz_review_explains_the_latest_attempt(graded):
    user = factories.user_create()
    learning.quiz_attempt_submit(user=user, quiz=graded, answers={"0": [0], "1": [0, 2]})
    view = selectors.graded_quiz_for_user(quiz=graded, user=user)
    assert [row["is_correct"] for row in view.review] == [False, True]
    assert view.review[0]["chosen"] == ["python:latest"]
    assert view.review[0]["explanation"] == "Only a digest names exactly one image."
    assert view.attempts_left == 1
