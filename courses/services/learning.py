"""Writes made by learners: enrollment, lesson progress, graded quiz attempts and reader marks."""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from courses import permissions
from courses.errors import LearnerError
from courses.models import Course, Enrollment, Lesson, LessonMark, LessonProgress, Quiz, QuizAttempt

# Reader marks: what a page's script may store per learner and lesson (bounded, so a script cannot fill the table).
MARK_KEY_RE = re.compile(r"^(?:quiz:[a-z0-9][a-z0-9-]{0,99}|checklist:[1-9][0-9]{0,3})$")
MARK_QUESTION_RE = re.compile(r"^q[1-9][0-9]{0,3}$")
MARK_MAX_KEYS = 64  # per learner and lesson
MARK_MAX_ITEMS = 200  # per key
MARK_MAX_ITEM = 9999  # the largest checklist item index


class QuizAttemptError(LearnerError):
    """An attempt refused: shown next to the quiz with its hint."""


class LessonMarkError(LearnerError):
    """A reader mark refused: the page's script sent a key or value the lesson cannot hold."""


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


def _mark_value_clean(*, key: str, value: Any) -> list[str] | list[int]:
    if not isinstance(value, list):
        raise LessonMarkError(
            f"The value of {key} is not a list.", hint='Send a JSON list, such as ["q1", "q3"] or [0, 2].'
        )
    if len(value) > MARK_MAX_ITEMS:
        raise LessonMarkError(
            f"The value of {key} has {len(value)} items; at most {MARK_MAX_ITEMS} are kept.",
            hint="Send only the ids of what is open or ticked.",
        )
    if key.startswith("quiz:"):
        bad = [item for item in value if not isinstance(item, str) or not MARK_QUESTION_RE.match(item)]
        if bad:
            raise LessonMarkError(
                f"The value of {key} holds {bad[0]!r}, which is not a question id.",
                hint='Question ids are "q" and a number, as in data-question="q2".',
            )
        return sorted(set(value), key=lambda item: int(item[1:]))
    # A bool is an int to Python; a checkbox index is never true or false.
    bad = [item for item in value if type(item) is not int or not 0 <= item <= MARK_MAX_ITEM]
    if bad:
        raise LessonMarkError(
            f"The value of {key} holds {bad[0]!r}, which is not a checklist item index.",
            hint=f'Item indices are whole numbers from 0 to {MARK_MAX_ITEM}, as in data-item="2".',
        )
    return sorted(set(value))


def _mark_target_check(*, lesson: Lesson, key: str) -> None:
    """The quiz or checklist a key names must be on the lesson's page."""
    kind, _, name = key.partition(":")
    attribute = f'data-quiz-key="{name}"' if kind == "quiz" else f'data-checklist="{name}"'
    if attribute not in lesson.html:
        what = f"quiz {name!r}" if kind == "quiz" else f"checklist {name}"
        raise LessonMarkError(
            f"This lesson has no {what}.", hint="Reload the page: the lesson may have changed since it was opened."
        )


def lesson_mark_set(*, user: AbstractBaseUser, lesson: Lesson, key: str, value: Any) -> LessonMark | None:
    """Keep the reader's state of one quiz ("quiz:<key>": opened question ids) or checklist ("checklist:<n>":
    ticked item indices) on `lesson`. An empty list forgets the key. Raises `LessonMarkError` saying what is wrong.
    """
    if not isinstance(key, str) or not MARK_KEY_RE.match(key):
        raise LessonMarkError(
            f"{str(key)[:130]!r} is not a mark key.",
            hint='Use "quiz:<quiz key>" or "checklist:<number>", as the lesson page names them.',
        )
    cleaned = _mark_value_clean(key=key, value=value)
    _mark_target_check(lesson=lesson, key=key)
    marks = LessonMark.objects.filter(user=user, lesson=lesson)
    if not cleaned:
        marks.filter(key=key).delete()
        return None
    if not marks.filter(key=key).exists() and marks.count() >= MARK_MAX_KEYS:
        raise LessonMarkError(
            f"This lesson already keeps {MARK_MAX_KEYS} marks for you.",
            hint="Clear the answers or ticks of another quiz or checklist first.",
        )
    # update_or_create retries as an update when a parallel request created the row first.
    mark, _ = LessonMark.objects.update_or_create(user=user, lesson=lesson, key=key, defaults={"value": cleaned})
    return mark
