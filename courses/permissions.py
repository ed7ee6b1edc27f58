"""Who may do what on the course site. Small named checks, one condition per line, so each is easy to test.

Reading is public: catalog, course and lesson pages need no account. Everything that writes (progress,
enrollment, quiz attempts) needs a logged-in user; graded quizzes also need an enrollment in the course.
"""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from courses.models import Enrollment, Quiz

User = AbstractBaseUser | AnonymousUser


def can_read_lessons(*, user: User) -> bool:
    # Lessons are public on purpose: the course is the advertisement for itself.
    return True


def can_track_progress(*, user: User) -> bool:
    return user.is_authenticated


def can_self_enroll(*, user: User, enrollment: Enrollment | None) -> bool:
    if not user.is_authenticated:
        return False
    return enrollment is None


def can_attempt_quiz(*, user: User, quiz: Quiz, enrollment: Enrollment | None) -> bool:
    if not user.is_authenticated:
        return False
    if not quiz.graded:
        return False
    if user.is_staff:
        return True
    return enrollment is not None


def has_attempts_left(*, quiz: Quiz, attempts_used: int) -> bool:
    if quiz.max_attempts is None:
        return True
    return attempts_used < quiz.max_attempts


def can_see_explanations(*, attempts_used: int) -> bool:
    # Explanations give the answers away, so they appear only once the learner has committed to an attempt.
    return attempts_used > 0
