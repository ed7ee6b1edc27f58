"""The logged-in reader's lesson page: one shell per lesson and import, shared by every logged-in reader, with each
reader's parts filled in per request (docs/architecture.md, "Request path")."""

import itertools
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils.html import conditional_escape, json_script
from django.utils.safestring import mark_safe

from config.context_processors import navigation
from courses import selectors
from courses.markdown import graded_quiz_placeholder
from courses.models import Quiz

# The shell lives as long as the anonymous page (courses.views): every import gets new keys.
SHELL_CACHE_SECONDS = 3600


# --- lesson shell: the logged-in reader's page ------------------------------------------------------------------
#
# Every logged-in reader of a lesson sees the same page but for a few personal parts: the header's account links
# (name, unread count, log-out form), the CSRF token, the "Completed" status, the completion form, the graded
# quizzes' attempts and the reader's marks. The page is rendered once per import of the course with a marker in
# place of each personal part (the "shell"), and each request fills the markers with that reader's fragments.
# The markers hold a random nonce drawn when the shell is built, so no lesson text can contain one: an author
# cannot make a reader's token or name appear anywhere but where the templates put them.


def code_cell_assets() -> dict[str, list[str]]:
    """The static scripts and stylesheets a lesson page with runnable code cells loads. They come from the app
    that runs the cells (settings.CODE_CELL_SCRIPTS / CODE_CELL_STYLES): courses only renders the cells' markup.
    Shared by the anonymous page (courses.views) and the logged-in shell, which cannot import the views."""
    return {
        "code_cell_scripts": list(getattr(settings, "CODE_CELL_SCRIPTS", [])),
        "code_cell_styles": list(getattr(settings, "CODE_CELL_STYLES", [])),
    }


@dataclass(frozen=True)
class _Slug:
    slug: str


@dataclass(frozen=True)
class _LessonAddress:
    """What the quiz fragment needs of a lesson (its URL), without holding the lesson's body in the cache."""

    slug: str
    unit: _Slug
    course: _Slug


@dataclass(frozen=True)
class _LessonShell:
    lesson_id: int
    address: _LessonAddress
    # Text and slot names alternating (text first and last), as re.split with one group returns them.
    parts: tuple[str, ...]
    # The parts of a slot that has a version per state: "header:done", "progress:todo"...
    variants: dict[str, tuple[str, ...]]
    quizzes: tuple[Quiz, ...]
    has_marks: bool


class _ShellReader(AnonymousUser):
    """Who the shell is rendered for: logged in, but nobody. A template that names the user outside a slot
    shows an empty name in every reader's page rather than the first reader's."""

    def __init__(self, *, is_staff: bool = False, username: str = "") -> None:
        self.is_staff = is_staff
        self.username = username

    @property
    def is_anonymous(self) -> bool:
        return False

    @property
    def is_authenticated(self) -> bool:
        return True


_SLOT_NAME = "[a-z0-9]+"


def _shell_key(course_slug: str, unit_slug: str, lesson_slug: str) -> str | None:
    version = selectors.course_version_get(course_slug=course_slug)
    if not version:
        return None
    return f"lesson-shell:v1:{course_slug}:{version}:{unit_slug}:{lesson_slug}"


def _shell_build(request: HttpRequest, course_slug: str, unit_slug: str, lesson_slug: str) -> _LessonShell:
    lesson = selectors.lesson_get(course_slug=course_slug, unit_slug=unit_slug, lesson_slug=lesson_slug)
    if lesson is None:
        raise Http404("No such lesson.")
    # Read as nobody in particular: the shell holds no one's progress or attempts.
    page = selectors.lesson_page(lesson=lesson, user=AnonymousUser())
    nonce = secrets.token_hex(16)

    def slot(name: str) -> str:
        return f"s{nonce}-{name}-"

    body = lesson.html
    for index, graded in enumerate(page.graded_quizzes):
        body = body.replace(graded_quiz_placeholder(graded.quiz.key), slot(f"quiz{index}"))
    has_marks = selectors.lesson_has_marks(lesson=lesson)
    context = {
        "page": page,
        "lesson": lesson,
        "course": lesson.course,
        "unit": lesson.unit,
        "body": mark_safe(body),  # noqa: S308 - sanitised at import; the slots are our markers
        "has_marks": has_marks,
        **code_cell_assets(),
        "slots": {name: slot(name) for name in ("nav", "header", "progress", "marks")},
        # These override the context processors' values, so nothing of the requesting reader reaches the shell.
        "csrf_token": slot("csrf"),
        "user": _ShellReader(),
        "messages": (),
    }
    pattern = re.compile(f"s{nonce}-({_SLOT_NAME})-")
    html = render_to_string("courses/lesson_detail.html", context, request=request)
    variants = {}
    for state, done in (("done", True), ("todo", False)):
        header = render_to_string(
            "courses/_lesson_page_header.html",
            {"lesson": lesson, "unit": lesson.unit, "h": lesson.header_html, "is_done": done},
        )
        progress = render_to_string(
            "courses/_lesson_progress.html",
            {"lesson": lesson, "is_done": done, "tracking": True, "csrf_token": slot("csrf")},
        )
        variants[f"header:{state}"] = tuple(pattern.split(header))
        variants[f"progress:{state}"] = tuple(pattern.split(progress))
    # The account links differ by three yes/no facts; the name and the count go in slots of their own.
    for review, staff, unread in itertools.product((True, False), repeat=3):
        nav = {
            "user": _ShellReader(is_staff=staff, username=slot("name")),
            "request": request,
            "csrf_token": slot("csrf"),
            "show_review_queue": review,
            "unread_notifications": slot("unread") if unread else 0,
        }
        variants[_nav_variant(review, staff, unread)] = tuple(pattern.split(render_to_string("_account_nav.html", nav)))
    return _LessonShell(
        lesson_id=lesson.pk,
        address=_LessonAddress(slug=lesson.slug, unit=_Slug(lesson.unit.slug), course=_Slug(lesson.course.slug)),
        parts=tuple(pattern.split(html)),
        variants=variants,
        quizzes=tuple(graded.quiz for graded in page.graded_quizzes),
        has_marks=has_marks,
    )


def _nav_variant(review: bool, staff: bool, unread: bool) -> str:
    return f"nav:{review:d}{staff:d}{unread:d}"


def _shell_fill(parts: tuple[str, ...], values: dict[str, str | tuple[str, ...]]) -> str:
    out = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            out.append(part)
            continue
        value = values[part]  # a KeyError here is a slot the templates name but nothing fills: a bug, loudly
        out.append(value if isinstance(value, str) else _shell_fill(value, values))
    return "".join(out)


def reader_page(request: HttpRequest, course_slug: str, unit_slug: str, lesson_slug: str) -> HttpResponse:
    """The lesson page of a logged-in reader: the shared shell (cached per import) with their own fragments.

    Queries: the course version, then the reader's progress and marks (one query), plus their attempts on a
    lesson with graded quizzes: constant in the number of lessons, quizzes, attempts and marks. The header's
    review-queue link and unread count come from the shared cache (config.context_processors.navigation). A
    course never imported has no version to key the shell by, so it is built per request (the lesson, its graded
    quizzes, previous and next on top).
    """
    key = _shell_key(course_slug, unit_slug, lesson_slug)
    shell = cache.get(key) if key is not None else None
    if shell is None:
        shell = _shell_build(request, course_slug, unit_slug, lesson_slug)
        if key is not None:
            cache.set(key, shell, timeout=SHELL_CACHE_SECONDS)
    user = request.user
    token = get_token(request)  # the requesting session's, and it sets the CSRF cookie when missing
    reader = selectors.reader_state_get(lesson_id=shell.lesson_id, user=user, with_marks=shell.has_marks)
    state = "done" if reader.done else "todo"
    header = navigation(request)
    unread = header["unread_notifications"]
    values: dict[str, str | tuple[str, ...]] = {
        "csrf": token,
        "nav": shell.variants[_nav_variant(header["show_review_queue"], user.is_staff, unread > 0)],
        "name": conditional_escape(user.get_username()),
        "unread": str(unread),
        "header": shell.variants[f"header:{state}"],
        "progress": shell.variants[f"progress:{state}"],
        "marks": "",
    }
    if shell.has_marks:
        values["marks"] = json_script(reader.marks, "reader-marks")
    graded = selectors.graded_quizzes_for_user(quizzes=list(shell.quizzes), user=user)
    for index, quiz in enumerate(graded):
        context = {"lesson": shell.address, "gq": quiz, "csrf_token": token}
        values[f"quiz{index}"] = render_to_string("courses/_graded_quiz.html", context)
    return HttpResponse(_shell_fill(shell.parts, values))
