"""Writes made by learners: enrollment, lesson progress and graded quiz attempts."""

from collections.abc import Mapping, Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from courses import permissions
from courses.errors import LearnerError
from courses.models import Course, Enrollment, Lesson, LessonProgress, Quiz, QuizAttempt


class QuizAttemptError(LearnerError):
    """An attempt refused: shown next to the quiz with its hint."""


def enrollment_create(*, user: AbstractBaseUser, course: Course, role: str = Enrollment.Role.LEARNER) -> Enrollment:
    """Enroll `user` in `course`; an existing enrollment is returned unchanged (roles change only in admin)."""
    enrollment, _ = Enrollment.objects.get_or_create(user=user, course=course, defaults={"role": role})
    return enrollment


def lesson_complete(*, user: AbstractBaseUser, lesson: Lesson) -> LessonProgress:
    """Mark `lesson` done for `user`. Idempotent: a second call keeps the first completion time."""
    progress, _ = LessonProgress.objects.get_or_create(user=user, lesson=lesson)
    return progress


def lesson_uncomplete(*, user: AbstractBaseUser, lesson: Lesson) -> None:
    LessonProgress.objects.filter(user=user, lesson=lesson).delete()


def quiz_score(*, quiz: Quiz, answers: Mapping[str, Sequence[int]]) -> int:
    """One point per question whose chosen set of choices equals the correct set exactly."""
    score = 0
    for index, question in enumerate(quiz.questions):
        correct = {i for i, choice in enumerate(question.get("choices", [])) if choice.get("correct")}
        if set(answers.get(str(index), [])) == correct:
            score += 1
    return score


def _answers_clean(*, quiz: Quiz, answers: Mapping[str, Sequence[int | str]]) -> dict[str, list[int]]:
    cleaned: dict[str, list[int]] = {}
    for index, question in enumerate(quiz.questions):
        number = index + 1
        raw = answers.get(str(index), [])
        try:
            chosen = sorted({int(value) for value in raw})
        except (TypeError, ValueError):
            raise QuizAttemptError(
                f"Question {number}: the answer is not a choice number.", hint="Pick one of the listed choices."
            ) from None
        choice_count = len(question.get("choices", []))
        if any(value < 0 or value >= choice_count for value in chosen):
            raise QuizAttemptError(
                f"Question {number}: that choice does not exist.", hint="Reload the page and pick a listed choice."
            )
        if not chosen:
            raise QuizAttemptError(f"Question {number} has no answer.", hint="Answer every question, then submit.")
        if question.get("kind", "single") == "single" and len(chosen) > 1:
            raise QuizAttemptError(f"Question {number} takes one answer.", hint="Pick a single choice for it.")
        cleaned[str(index)] = chosen
    return cleaned


def quiz_attempt_submit(
    *, user: AbstractBaseUser, quiz: Quiz, answers: Mapping[str, Sequence[int | str]]
) -> QuizAttempt:
    """Score `answers` ({"question index": [choice indexes]}) server-side and store the attempt.

    A logged-in user who is not enrolled yet is enrolled as a learner: taking a quiz is the clearest sign
    of wanting to follow the course.
    """
    if not quiz.graded:
        raise QuizAttemptError("This quiz is not graded.", hint="Reveal the answers on the page instead.")
    course = quiz.lesson.course
    with transaction.atomic():
        # Lock the quiz row so two tabs submitting at once cannot both take the last attempt (no-op on SQLite,
        # whose writers are already serialised by BEGIN IMMEDIATE).
        Quiz.objects.select_for_update().filter(pk=quiz.pk).exists()
        enrollment = None
        if user.is_authenticated:
            enrollment = enrollment_create(user=user, course=course)
        if not permissions.can_attempt_quiz(user=user, quiz=quiz, enrollment=enrollment):
            raise QuizAttemptError("You cannot take this quiz.", hint="Log in and enroll in the course first.")
        used = QuizAttempt.objects.filter(quiz=quiz, user=user).count()
        if not permissions.has_attempts_left(quiz=quiz, attempts_used=used):
            raise QuizAttemptError(
                f"You have used all {quiz.max_attempts} attempts at this quiz.",
                hint="Your attempts and their explanations stay on the lesson page.",
            )
        cleaned = _answers_clean(quiz=quiz, answers=answers)
        return QuizAttempt.objects.create(
            quiz=quiz,
            user=user,
            answers=cleaned,
            score=quiz_score(quiz=quiz, answers=cleaned),
            max_score=len(quiz.questions),
        )
