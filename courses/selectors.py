"""Reads for the course site. Every selector runs a fixed number of queries, whatever the course's size."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q
from django.utils.dateparse import parse_datetime
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

from courses import permissions
from courses.coursefs.assets import content_problem as asset_content_problem
from courses.extensions import course_labs
from courses.models import Course, CourseAsset, Enrollment, Lesson, LessonMark, LessonProgress, Quiz, QuizAttempt, Unit

User = AbstractBaseUser | AnonymousUser

GRADED_QUIZ_SLOT_MARKER = 'class="graded-quiz-slot"'

# The order references are grouped in on a lesson page; unknown kinds follow, alphabetically.
REFERENCE_KINDS = ["official-doc", "article", "paper", "book", "video", "tool", "notebook", "repository"]
REFERENCE_KIND_LABELS = {
    "official-doc": "Official documentation",
    "article": "Articles",
    "paper": "Papers",
    "book": "Books",
    "video": "Videos",
    "tool": "Tools",
    "notebook": "Notebooks",
    "repository": "Repositories",
}


def _percent(done: int, total: int) -> int:
    return round(100 * done / total) if total else 0


@dataclass
class UnitProgress:
    done: int = 0
    total: int = 0

    @property
    def percent(self) -> int:
        return _percent(self.done, self.total)


@dataclass
class CourseProgress:
    units: dict[int, UnitProgress] = field(default_factory=dict)  # by unit id

    @property
    def done(self) -> int:
        return sum(unit.done for unit in self.units.values())

    @property
    def total(self) -> int:
        return sum(unit.total for unit in self.units.values())

    @property
    def percent(self) -> int:
        return _percent(self.done, self.total)


def course_progress(*, user: User, course: Course) -> CourseProgress:
    """Per-unit done/total and the course percentage, in two queries."""
    progress = CourseProgress()
    unit_of: dict[int, int] = {}
    for lesson_id, unit_id in _course_lessons(course).values_list("id", "unit_id").order_by():
        unit_of[lesson_id] = unit_id
        progress.units.setdefault(unit_id, UnitProgress()).total += 1
    if not user.is_authenticated:
        return progress
    for lesson_id in _done_lesson_ids(user=user, course=course):
        progress.units[unit_of[lesson_id]].done += 1
    return progress


def _course_lessons(course: Course):
    # Through the unit on purpose: SQLite then walks the small unit table and the lesson(unit_id) index.
    # Lesson's own course_id column sits after the large html column, so filtering on it reads every row's
    # overflow pages (about 4 ms for 200 lessons, against 0.3 ms this way).
    return Lesson.objects.filter(unit__course=course)


def _done_lesson_ids(*, user: User, course: Course) -> list[int]:
    lesson_ids = _course_lessons(course).values("id")
    return list(LessonProgress.objects.filter(user=user, lesson_id__in=lesson_ids).values_list("lesson_id", flat=True))


def enrollment_get(*, user: User, course: Course) -> Enrollment | None:
    if not user.is_authenticated:
        return None
    return Enrollment.objects.filter(user=user, course=course).first()


@dataclass
class CatalogEntry:
    course: Course
    lesson_count: int
    done: int | None  # None when nobody is logged in

    @property
    def percent(self) -> int:
        return _percent(self.done or 0, self.lesson_count)


def course_list(*, user: User) -> list[CatalogEntry]:
    courses = list(Course.objects.annotate(lesson_count=Count("lessons")).order_by("title"))
    done_by_course: dict[int, int] | None = None
    if user.is_authenticated:
        rows = (
            LessonProgress.objects.filter(user=user).values("lesson__course_id").annotate(done=Count("id")).order_by()
        )
        done_by_course = {row["lesson__course_id"]: row["done"] for row in rows}
    return [
        CatalogEntry(
            course=course,
            lesson_count=course.lesson_count,
            done=None if done_by_course is None else done_by_course.get(course.id, 0),
        )
        for course in courses
    ]


@dataclass
class OutlineUnit:
    unit: Unit
    lessons: list[dict[str, Any]]  # id, slug, title, tagline, estimated_minutes, is_done
    progress: UnitProgress
    labs: list[dict[str, Any]] = field(default_factory=list)  # slug, title


@dataclass
class CourseOutline:
    course: Course
    units: list[OutlineUnit]
    progress: CourseProgress
    enrollment: Enrollment | None
    can_self_enroll: bool
    tracking: bool  # whether progress is shown (a user is logged in)


def course_outline(*, course: Course, user: User) -> CourseOutline:
    """Units with their lessons (each flagged `is_done` for the user) and labs; five queries at most."""
    units = list(course.units.all())
    lessons = list(
        _course_lessons(course)
        .values("id", "unit_id", "slug", "title", "tagline", "estimated_minutes")
        .order_by("unit__position", "position")
    )
    done_ids = set(_done_lesson_ids(user=user, course=course)) if user.is_authenticated else set()
    by_unit: dict[int, list[dict[str, Any]]] = defaultdict(list)
    progress = CourseProgress()
    for lesson in lessons:
        lesson["is_done"] = lesson["id"] in done_ids
        by_unit[lesson["unit_id"]].append(lesson)
        unit_progress = progress.units.setdefault(lesson["unit_id"], UnitProgress())
        unit_progress.total += 1
        unit_progress.done += lesson["is_done"]
    labs = course_labs()
    labs_by_unit = labs.labs_by_unit(course=course) if labs is not None else {}
    enrollment = enrollment_get(user=user, course=course)
    return CourseOutline(
        course=course,
        units=[
            OutlineUnit(
                unit=unit,
                lessons=by_unit[unit.id],
                progress=progress.units.get(unit.id, UnitProgress()),
                labs=labs_by_unit.get(unit.id, []),
            )
            for unit in units
        ],
        progress=progress,
        enrollment=enrollment,
        can_self_enroll=permissions.can_self_enroll(user=user, enrollment=enrollment),
        tracking=permissions.can_track_progress(user=user),
    )


def _course_version(course: Course) -> str | None:
    return _version_of(course.content_version, course.imported_at)


def _version_of(content_version: str, imported_at: datetime | None) -> str | None:
    if not content_version or imported_at is None:
        return None
    return f"{content_version}@{imported_at.timestamp():.6f}"


# --- the per-request reads of cached pages: plain SQL ----------------------------------------------------------
#
# Each cached lesson page (anonymous, or a logged-in reader's shell) still reads a few rows per request. Building
# a query through the ORM costs 0.5-0.9 ms of CPU here, the same SQL through a cursor 0.05 ms, and on a page served
# from the cache that was most of the time left (docs/benchmarks.md, issue 12). So these few are written as SQL,
# with names quoted by the backend (S608 is silenced for them: no value is ever formatted in), parameters bound,
# and values decoded as the ORM would; the tests run them on SQLite and PostgreSQL.


def _sql_name(name: str) -> str:
    return connection.ops.quote_name(name)


def _sql_datetime(value: datetime | str | None) -> datetime | None:
    """A DateTimeField as the cursor returns it: a datetime (PostgreSQL) or its text in UTC (SQLite)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def course_version_get(*, course_slug: str) -> str | None:
    """A string that changes whenever the course's content may have changed; None for courses never imported.
    One query (plain SQL: see above).

    The content version alone is not enough: two imports of different uncommitted edits share "<commit>-dirty".
    """
    q = _sql_name
    table = q(Course._meta.db_table)
    sql = f"SELECT {q('content_version')}, {q('imported_at')} FROM {table} WHERE {q('slug')} = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [course_slug])
        row = cursor.fetchone()
    return None if row is None else _version_of(row[0], _sql_datetime(row[1]))


def lesson_get(*, course_slug: str, unit_slug: str, lesson_slug: str) -> Lesson | None:
    lesson = (
        Lesson.objects.select_related("unit", "course")
        .filter(course__slug=course_slug, unit__slug=unit_slug, slug=lesson_slug)
        .first()
    )
    if lesson is not None:
        # The unit's course is the lesson's: share the row so `unit.display_label` costs no query.
        lesson.unit.course = lesson.course
    return lesson


@dataclass
class GradedQuiz:
    quiz: Quiz
    questions: list[dict[str, Any]]  # prompts and choice texts only: answers never leave the server
    attempts: list[QuizAttempt]  # newest first
    can_attempt: bool
    attempts_left: int | None  # None when unlimited
    login_required: bool

    @property
    def latest(self) -> QuizAttempt | None:
        return self.attempts[0] if self.attempts else None

    @property
    def best(self) -> QuizAttempt | None:
        """The highest-scoring attempt, the earliest among equals: the one that counts."""
        return max(reversed(self.attempts), key=lambda attempt: attempt.score, default=None)

    @property
    def review(self) -> list[dict[str, Any]]:
        """The latest attempt question by question, with explanations; empty before any attempt."""
        latest = self.latest
        if latest is None or not permissions.can_see_explanations(attempts_used=len(self.attempts)):
            return []
        rows = []
        for index, question in enumerate(self.quiz.questions):
            choices = question.get("choices", [])
            chosen = latest.answers.get(str(index), [])
            correct = [i for i, choice in enumerate(choices) if choice.get("correct")]
            rows.append(
                {
                    "number": index + 1,
                    "prompt": _html(question, "prompt_html", "prompt"),
                    "chosen": [_html(choices[i], "html", "text") for i in chosen if i < len(choices)],
                    "is_correct": sorted(chosen) == correct,
                    "explanation": _html(question, "explanation_html", "explanation"),
                }
            )
        return rows


def _html(data: dict[str, Any], html_key: str, text_key: str) -> str:
    """The renderer's sanitised HTML for a quiz text when the row has it, else the escaped plain text."""
    if data.get(html_key):
        return mark_safe(data[html_key])  # noqa: S308 - sanitised by courses.markdown at import time
    return conditional_escape(data.get(text_key, ""))


def graded_quiz_build(*, quiz: Quiz, user: User, attempts: list[QuizAttempt]) -> GradedQuiz:
    questions = [
        {
            "index": index,
            "number": index + 1,
            "prompt": _html(question, "prompt_html", "prompt"),
            "multiple": question.get("kind", "single") == "multiple",
            "choices": [
                {"index": i, "text": _html(choice, "html", "text")} for i, choice in enumerate(question["choices"])
            ],
        }
        for index, question in enumerate(quiz.questions)
    ]
    # Enrollment happens on the first attempt, so any logged-in user may try while attempts remain.
    allowed = user.is_authenticated and quiz.graded
    left = None if quiz.max_attempts is None else max(quiz.max_attempts - len(attempts), 0)
    return GradedQuiz(
        quiz=quiz,
        questions=questions,
        attempts=attempts,
        can_attempt=allowed and permissions.has_attempts_left(quiz=quiz, attempts_used=len(attempts)),
        attempts_left=left,
        login_required=not user.is_authenticated,
    )


@dataclass
class LessonLink:
    """Previous or next lesson, enough to link to it."""

    slug: str
    title: str
    unit_id: int
    unit_slug: str
    unit_number: int
    unit_label: str  # the unit's display label ("Module"), its own or the course's
    unit_track: str = ""


@dataclass
class LessonPage:
    lesson: Lesson
    previous: LessonLink | None
    next: LessonLink | None
    references: list[tuple[str, list[dict[str, str]]]]  # (kind label, references)
    graded_quizzes: list[GradedQuiz]
    is_done: bool
    tracking: bool
    enrollment: Enrollment | None


def references_group(references: list[dict[str, str]]) -> list[tuple[str, list[dict[str, str]]]]:
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for reference in references:
        groups[reference.get("kind") or "other"].append(reference)
    order = [kind for kind in REFERENCE_KINDS if kind in groups] + sorted(set(groups) - set(REFERENCE_KINDS))
    return [(REFERENCE_KIND_LABELS.get(kind, kind.replace("-", " ").capitalize()), groups[kind]) for kind in order]


def _neighbours(lesson: Lesson) -> tuple[LessonLink | None, LessonLink | None]:
    """Previous and next lessons across unit boundaries: two small queries whatever the course's size.

    The lessons are found through unit_id (the other units' ids come from a subquery) rather than through
    the lesson's course_id column: see `_course_lessons` for why that matters on SQLite.
    """
    links: list[LessonLink | None] = []
    for before in (True, False):
        here = {"position__lt" if before else "position__gt": lesson.unit.position}
        other_units = Unit.objects.filter(course_id=lesson.course_id, **here).values("id")
        same_unit = {"position__lt" if before else "position__gt": lesson.position}
        row = (
            Lesson.objects.filter(Q(unit_id__in=other_units) | Q(unit_id=lesson.unit_id, **same_unit))
            .order_by(*(("-unit__position", "-position") if before else ("unit__position", "position")))
            .values("slug", "title", "unit_id", "unit__slug", "unit__number", "unit__label", "unit__track")
            .first()
        )
        links.append(
            None
            if row is None
            else LessonLink(
                row["slug"],
                row["title"],
                row["unit_id"],
                row["unit__slug"],
                row["unit__number"],
                unit_label=row["unit__label"] or lesson.course.unit_label,
                unit_track=row["unit__track"],
            )
        )
    return links[0], links[1]


def _neighbours_cached(lesson: Lesson) -> tuple[LessonLink | None, LessonLink | None]:
    """`_neighbours`, remembered per import of the course (logged-in pages are not cached whole)."""
    version = _course_version(lesson.course)
    if version is None:
        return _neighbours(lesson)
    # v2: LessonLink gained the unit's label and track; links cached by the previous code lack them.
    key = f"lesson-neighbours:v2:{lesson.course_id}:{version}:{lesson.pk}"
    links = cache.get(key)
    if links is None:
        links = _neighbours(lesson)
        cache.set(key, links, timeout=3600)
    return links


def lesson_page(*, lesson: Lesson, user: User) -> LessonPage:
    """Everything the lesson page shows besides the lesson row itself (fetched with `lesson_get`).

    Anonymous readers cost two queries (previous and next), plus one when the lesson holds a graded quiz;
    logged-in readers add progress, enrollment and attempts: constant in the number of lessons.
    """
    enrollment = enrollment_get(user=user, course=lesson.course)
    is_done = lesson_is_done(lesson_id=lesson.pk, user=user)
    graded: list[GradedQuiz] = []
    # Most lessons have no graded quiz: skip the query unless the rendered body holds a slot for one.
    if GRADED_QUIZ_SLOT_MARKER in lesson.html:
        quizzes = list(Quiz.objects.filter(lesson=lesson, graded=True).order_by("position"))
        graded = graded_quizzes_for_user(quizzes=quizzes, user=user)
    previous, following = _neighbours_cached(lesson)
    return LessonPage(
        lesson=lesson,
        previous=previous,
        next=following,
        references=references_group(lesson.references),
        graded_quizzes=graded,
        is_done=is_done,
        tracking=permissions.can_track_progress(user=user),
        enrollment=enrollment,
    )


def graded_quizzes_for_user(*, quizzes: list[Quiz], user: User) -> list[GradedQuiz]:
    """`quizzes` as `user` sees them (their attempts, what is left): one query for a logged-in user, none else."""
    attempts_by_quiz: dict[int, list[QuizAttempt]] = defaultdict(list)
    if user.is_authenticated and quizzes:
        for attempt in QuizAttempt.objects.filter(quiz__in=quizzes, user=user).order_by("-created_at", "-id"):
            attempts_by_quiz[attempt.quiz_id].append(attempt)
    return [graded_quiz_build(quiz=quiz, user=user, attempts=attempts_by_quiz[quiz.id]) for quiz in quizzes]


@dataclass(frozen=True)
class ReaderState:
    """A logged-in reader's own state on a lesson page: completed or not, and their marks (see lesson_marks)."""

    done: bool
    marks: dict[str, list[Any]]


# The progress row's place in reader_state_get's rows: no mark has an empty key (learning.lesson_mark_set).
_DONE_ROW_KEY = ""


def reader_state_get(*, lesson_id: int, user: User, with_marks: bool) -> ReaderState:
    """Whether `user` completed the lesson and, `with_marks`, their marks on it: one query for a logged-in user
    (plain SQL: see above), none else. `lesson_is_done` and `reader_marks_get` in one."""
    if not user.is_authenticated:
        return ReaderState(done=False, marks={})
    q = _sql_name
    where = f"{q('user_id')} = %s AND {q('lesson_id')} = %s"
    progress, marks = q(LessonProgress._meta.db_table), q(LessonMark._meta.db_table)
    sql = f"SELECT '{_DONE_ROW_KEY}' AS {q('key')}, NULL AS {q('value')} FROM {progress} WHERE {where}"  # noqa: S608
    params = [user.pk, lesson_id]
    if with_marks:
        sql += f" UNION ALL SELECT {q('key')}, {q('value')} FROM {marks} WHERE {where}"  # noqa: S608
        params += [user.pk, lesson_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    value = LessonMark._meta.get_field("value")
    rows.sort(key=lambda row: row[0])
    found = {key: value.from_db_value(raw, None, connection) for key, raw in rows if key != _DONE_ROW_KEY}
    return ReaderState(done=any(key == _DONE_ROW_KEY for key, _ in rows), marks=found)


def lesson_is_done(*, lesson_id: int, user: User) -> bool:
    """Whether `user` marked the lesson complete: one query for a logged-in user, none else."""
    return user.is_authenticated and LessonProgress.objects.filter(user=user, lesson_id=lesson_id).exists()


def graded_quiz_for_user(*, quiz: Quiz, user: User) -> GradedQuiz:
    attempts = []
    if user.is_authenticated:
        attempts = list(QuizAttempt.objects.filter(quiz=quiz, user=user).order_by("-created_at", "-id"))
    return graded_quiz_build(quiz=quiz, user=user, attempts=attempts)


# --- reader marks --------------------------------------------------------------------------------------------

# Attributes the renderer puts on the structures a reader can mark (courses/markdown): a lesson without them
# has nothing to restore, so its page skips the query.
MARKABLE_MARKERS = ("data-question=", "data-checklist=")


def lesson_has_marks(*, lesson: Lesson) -> bool:
    """Whether the lesson's page holds answers to open or items to tick (reader marks apply to it)."""
    return any(marker in lesson.html for marker in MARKABLE_MARKERS)


def lesson_marks(*, lesson: Lesson, user: User) -> dict[str, list[Any]]:
    """The reader's marks on `lesson` by key ("quiz:<key>" -> opened question ids, "checklist:<n>" -> ticked
    item indices): one query for a logged-in reader on a lesson with markable structures, none otherwise."""
    if not lesson_has_marks(lesson=lesson):
        return {}
    return reader_marks_get(lesson_id=lesson.pk, user=user)


def reader_marks_get(*, lesson_id: int, user: User) -> dict[str, list[Any]]:
    """`lesson_marks` for a lesson known by id (the logged-in page's shared shell knows whether it has marks)."""
    if not user.is_authenticated:
        return {}
    return dict(LessonMark.objects.filter(user=user, lesson_id=lesson_id).order_by("key").values_list("key", "value"))


# --- course assets -------------------------------------------------------------------------------------------

# The media type each file extension names (see "Course assets" in docs): a URL whose extension does not name
# the stored file's type is not served, so no file is ever served as a type it was not validated as.
ASSET_MEDIA_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "svg": "image/svg+xml",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "json": "application/json",
    "txt": "text/plain",
    "ipynb": "application/x-ipynb+json",
}
ASSET_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"})


def asset_media_type(*, filename: str) -> str | None:
    """The media type `filename`'s extension names (case-insensitive), or None for an extension never served."""
    stem, dot, extension = filename.rpartition(".")
    if not dot or not stem:
        return None
    return ASSET_MEDIA_TYPES.get(extension.lower())


def course_asset_get(*, sha256: str, filename: str) -> CourseAsset | None:
    """The stored asset named by `sha256` as `filename`'s extension says to serve it, or None.

    The same bytes may be shipped under two extensions (data.txt renamed to data.csv, or one file in two
    courses): the row keeps the type it was first stored with, so another type is served only when the bytes
    pass the loader's content check for that extension (an SVG's safety checks included).
    """
    media_type = asset_media_type(filename=filename)
    if media_type is None:
        return None
    asset = CourseAsset.objects.filter(sha256=sha256).first()
    if asset is None:
        return None
    if asset.media_type != media_type:
        if asset_content_problem(filename, bytes(asset.data)) is not None:
            return None
        asset.media_type = media_type
    return asset
