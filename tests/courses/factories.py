"""Plain factory functions for course rows: real database rows, simple pre-rendered HTML."""

import itertools

from django.contrib.auth import get_user_model

from courses.models import Course, Enrollment, Lesson, Quiz, Unit

_counter = itertools.count(1)

PASSWORD = "a-long-test-password-42"


def user_create(*, username: str | None = None, is_staff: bool = False, password: str = PASSWORD):
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username=username, password=password, is_staff=is_staff)


def course_create(*, slug: str | None = None, title: str | None = None, unit_label: str = "Week", **fields) -> Course:
    n = next(_counter)
    return Course.objects.create(
        slug=slug or f"course-{n}",
        title=title or f"Course {n}",
        summary=fields.pop("summary", "A course about shipping software."),
        unit_label=unit_label,
        **fields,
    )


def unit_create(*, course: Course, position: int, slug: str | None = None, title: str | None = None) -> Unit:
    return Unit.objects.create(
        course=course, position=position, slug=slug or f"unit-{position}", title=title or f"Unit title {position}"
    )


def lesson_create(*, unit: Unit, position: int, slug: str | None = None, html: str | None = None, **fields) -> Lesson:
    slug = slug or f"lesson-{unit.position}-{position}"
    defaults = {
        "title": f"Lesson {unit.position}.{position}",
        "source_path": f"{unit.slug}/{position:02d}-{slug}.md",
        "content_hash": f"hash-{slug}",
        "html": html if html is not None else f'<h2 id="intro">Intro</h2><p>Body of {slug}.</p>',
        "toc": [{"level": 2, "id": "intro", "text": "Intro"}],
    }
    defaults.update(fields)
    return Lesson.objects.create(course=unit.course, unit=unit, slug=slug, position=position, **defaults)


def course_with_lessons_create(*, units: int = 2, lessons_per_unit: int = 2, **course_fields) -> Course:
    course = course_create(**course_fields)
    for u in range(1, units + 1):
        unit = unit_create(course=course, position=u)
        for p in range(1, lessons_per_unit + 1):
            lesson_create(unit=unit, position=p)
    return course


def graded_quiz_slot(key: str) -> str:
    return f'<div class="graded-quiz-slot" data-quiz-key="{key}"></div>'


QUESTIONS = [
    {
        "prompt": "Which base image reference is reproducible?",
        "kind": "single",
        "choices": [{"text": "python:latest"}, {"text": "python:3.11.9-slim@sha256:abc", "correct": True}],
        "explanation": "Only a digest names exactly one image.",
    },
    {
        "prompt": "Which files pin dependencies?",
        "kind": "multiple",
        "choices": [
            {"text": "requirements.lock", "correct": True},
            {"text": "README.md"},
            {"text": "uv.lock", "correct": True},
        ],
        "explanation": "Lock files record exact versions and hashes.",
    },
]


def graded_quiz_create(*, lesson: Lesson, key: str = "final", max_attempts: int | None = 2, questions=None) -> Quiz:
    lesson.html = lesson.html + graded_quiz_slot(key)
    lesson.save(update_fields=["html"])
    return Quiz.objects.create(
        lesson=lesson,
        key=key,
        title="Unit check",
        graded=True,
        max_attempts=max_attempts,
        questions=questions if questions is not None else QUESTIONS,
    )


def enrollment_create(*, user, course: Course, role: str = Enrollment.Role.LEARNER) -> Enrollment:
    return Enrollment.objects.create(user=user, course=course, role=role)
