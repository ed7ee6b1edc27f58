import pytest
from django.contrib.auth.models import AnonymousUser

from courses import permissions
from tests.courses import factories


@pytest.fixture
def quiz_setup(db):
    course = factories.course_with_lessons_create(units=1, lessons_per_unit=1)
    lesson = course.lessons.get()
    quiz = factories.graded_quiz_create(lesson=lesson, max_attempts=2)
    learner = factories.user_create()
    return {
        "course": course,
        "quiz": quiz,
        "learner": learner,
        "enrollment": factories.enrollment_create(user=learner, course=course),
        "outsider": factories.user_create(),
        "staff": factories.user_create(is_staff=True),
    }


def test_anyone_can_read_lessons(quiz_setup):
    for user in (AnonymousUser(), quiz_setup["learner"], quiz_setup["outsider"], quiz_setup["staff"]):
        assert permissions.can_read_lessons(user=user)


def test_only_logged_in_users_track_progress(quiz_setup):
    assert not permissions.can_track_progress(user=AnonymousUser())
    assert permissions.can_track_progress(user=quiz_setup["learner"])
    assert permissions.can_track_progress(user=quiz_setup["outsider"])
    assert permissions.can_track_progress(user=quiz_setup["staff"])


def test_self_enroll_is_for_logged_in_users_not_yet_enrolled(quiz_setup):
    assert not permissions.can_self_enroll(user=AnonymousUser(), enrollment=None)
    assert not permissions.can_self_enroll(user=quiz_setup["learner"], enrollment=quiz_setup["enrollment"])
    assert permissions.can_self_enroll(user=quiz_setup["outsider"], enrollment=None)
    assert permissions.can_self_enroll(user=quiz_setup["staff"], enrollment=None)


def test_attempting_a_graded_quiz_needs_login_and_enrollment_unless_staff(quiz_setup):
    quiz = quiz_setup["quiz"]
    assert not permissions.can_attempt_quiz(user=AnonymousUser(), quiz=quiz, enrollment=None)
    assert permissions.can_attempt_quiz(user=quiz_setup["learner"], quiz=quiz, enrollment=quiz_setup["enrollment"])
    assert not permissions.can_attempt_quiz(user=quiz_setup["outsider"], quiz=quiz, enrollment=None)
    assert permissions.can_attempt_quiz(user=quiz_setup["staff"], quiz=quiz, enrollment=None)


def test_ungraded_quizzes_take_no_attempts(quiz_setup):
    quiz = quiz_setup["quiz"]
    quiz.graded = False
    assert not permissions.can_attempt_quiz(user=quiz_setup["learner"], quiz=quiz, enrollment=quiz_setup["enrollment"])
    assert not permissions.can_attempt_quiz(user=quiz_setup["staff"], quiz=quiz, enrollment=None)


def test_attempts_run_out_at_max_attempts(quiz_setup):
    quiz = quiz_setup["quiz"]
    assert permissions.has_attempts_left(quiz=quiz, attempts_used=1)
    assert not permissions.has_attempts_left(quiz=quiz, attempts_used=2)
    quiz.max_attempts = None
    assert permissions.has_attempts_left(quiz=quiz, attempts_used=500)


def test_explanations_appear_only_after_an_attempt():
    assert not permissions.can_see_explanations(attempts_used=0)
    assert permissions.can_see_explanations(attempts_used=1)
