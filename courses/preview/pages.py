"""The preview's pages, rendered from the course as read from disk: the outline, lessons, lab instructions and
the problems, each problem quoted from its file at its line."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from courses.coursefs.spec import CourseSpec, LabEntry, LessonSpec, UnitSpec, lesson_url
from courses.errors import CourseProblem
from courses.markdown import graded_quiz_placeholder
from courses.selectors import references_group

STATIC_PREFIX = "/static/"
CHANGES_PATH = "/__preview__/changes"
MAX_QUOTED_FILE_BYTES = 1024 * 1024  # the loader's own limit for a text file
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{2,3})\s")


def lesson_path(course: CourseSpec, lesson: LessonSpec) -> str:
    return lesson_url(course.slug, lesson.unit_slug, lesson.slug)


def lab_path(course: CourseSpec, lab: LabEntry) -> str:
    return f"/courses/{course.slug}/labs/{lab.slug}/"


def unit_heading(course: CourseSpec, unit: UnitSpec) -> str:
    """ "<track> · <label> <number>", as the site names a unit (Unit.display_label: the unit's label, else the
    course's unit_label)."""
    named = f"{unit.label or course.unit_label} {unit.number}"
    return f"{unit.track} · {named}" if unit.track else named


@dataclass
class Page:
    """What the preview shows at a path: a template and its context (the WSGI app adds the shared parts)."""

    template: str
    context: dict[str, Any]
    status: int = 200


# --- problems, quoted ------------------------------------------------------------------------------------------


class SourceFiles:
    """The course's files as lines, read once per page, for quoting problems. Nothing outside the course is read."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._lines: dict[str, list[str]] = {}

    def lines(self, file: str) -> list[str]:
        if file not in self._lines:
            self._lines[file] = self._read(file)
        return self._lines[file]

    def _read(self, file: str) -> list[str]:
        path = (self.root / file).resolve()
        if self.root not in path.parents or not path.is_file() or path.stat().st_size > MAX_QUOTED_FILE_BYTES:
            return []
        return path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")


def problem_view(problem: CourseProblem, sources: SourceFiles, *, href: str = "", anchor: str = "") -> dict[str, Any]:
    """A problem as the panel shows it: where, what, the fix, the source line with one line either side, and
    links to the page showing the file (`href`) and to the spot on this page (`anchor`)."""
    quote = []
    if problem.line:
        lines = sources.lines(problem.file)
        first, last = max(problem.line - 1, 1), min(problem.line + 1, len(lines))
        quote = [{"number": n, "text": lines[n - 1], "here": n == problem.line} for n in range(first, last + 1)]
    return {
        "file": problem.file,
        "line": problem.line,
        "message": problem.message,
        "hint": problem.hint,
        "quote": quote,
        "href": href,
        "anchor": anchor,
    }


def _page_of_file(course: CourseSpec | None) -> dict[str, str]:
    if course is None:
        return {}
    pages = {lesson.file: lesson_path(course, lesson) for lesson in course.lessons()}
    pages.update({lab.instructions_file: lab_path(course, lab) for lab in course.labs() if lab.instructions_file})
    return pages


def problem_views(problems: list[CourseProblem], sources: SourceFiles, course: CourseSpec | None) -> list[dict]:
    pages = _page_of_file(course)
    return [problem_view(problem, sources, href=pages.get(problem.file, "")) for problem in problems]


def section_anchor(lesson: LessonSpec) -> Callable[[int | None], str]:
    """A function from a file line to the id of the page element showing it: the lesson header for the front
    matter, else the h2/h3 section holding the line (source headings outside code fences, matched in order to the
    rendered table of contents); "" when the headings cannot be matched (e.g. setext headings)."""
    starts: list[int] = []
    fenced = False
    for index, text in enumerate(lesson.body.split("\n")):
        if _FENCE.match(text):
            fenced = not fenced
        elif not fenced and _HEADING.match(text):
            starts.append(lesson.body_offset + index + 1)
    toc = lesson.toc
    sections = list(zip(starts, [entry["id"] for entry in toc], strict=True)) if len(starts) == len(toc) else []

    def anchor(line: int | None) -> str:
        if not line:
            return ""
        if line <= lesson.body_offset:
            return "lesson-title"
        found = "lesson-body"
        for start, ident in sections:
            if start <= line:
                found = ident
        return found

    return anchor


# --- pages -----------------------------------------------------------------------------------------------------


def _units(course: CourseSpec, problems: list[CourseProblem]) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem.file] = counts.get(problem.file, 0) + 1
    return [
        {
            "unit": unit,
            "heading": unit_heading(course, unit),
            "lessons": [
                {"lesson": lesson, "path": lesson_path(course, lesson), "problems": counts.get(lesson.file, 0)}
                for lesson in unit.lessons
            ],
            "labs": [
                {"lab": lab, "path": lab_path(course, lab), "problems": counts.get(lab.instructions_file, 0)}
                for lab in unit.labs
            ],
        }
        for unit in course.units
    ]


def outline_page(course: CourseSpec, problems: list[CourseProblem], sources: SourceFiles) -> Page:
    return Page(
        "courses/preview/outline.html",
        {"course": course, "units": _units(course, problems), "problems": problem_views(problems, sources, course)},
    )


def broken_page(problems: list[CourseProblem], sources: SourceFiles) -> Page:
    """The course could not be read at all (course.yaml missing or broken): only its problems."""
    return Page("courses/preview/broken.html", {"problems": problem_views(problems, sources, None)})


def missing_page(
    course: CourseSpec, problems: list[CourseProblem], sources: SourceFiles, *, path: str, file: str
) -> Page:
    """No page at `path` now. When an earlier read had one there (`file`), that file's problems say why."""
    own = [problem for problem in problems if file and problem.file == file]
    return Page(
        "courses/preview/missing.html",
        {
            "course": course,
            "path": path,
            "file": file,
            "problems": problem_views(own, sources, course),
            "others": problem_views([p for p in problems if p not in own], sources, course),
        },
        status=404,
    )


def _graded_previews(html: str, quizzes: list[dict[str, Any]]) -> str:
    """Graded quizzes, which the site renders per learner, shown read-only with the author's answers."""
    for quiz in quizzes:
        if quiz.get("graded"):
            preview = render_to_string("courses/preview/_graded_quiz.html", {"quiz": quiz})
            html = html.replace(graded_quiz_placeholder(quiz["key"]), preview)
    return html


def _neighbours(course: CourseSpec, lesson: LessonSpec) -> tuple[dict | None, dict | None]:
    lessons = course.lessons()
    index = lessons.index(lesson)
    units = {unit.slug: unit for unit in course.units}

    def link(other: LessonSpec) -> dict[str, Any]:
        unit = units[other.unit_slug]
        return {
            "lesson": other,
            "path": lesson_path(course, other),
            "unit_heading": unit_heading(course, unit) if other.unit_slug != lesson.unit_slug else "",
        }

    previous = link(lessons[index - 1]) if index > 0 else None
    following = link(lessons[index + 1]) if index + 1 < len(lessons) else None
    return previous, following


def _split_problems(
    problems: list[CourseProblem],
    sources: SourceFiles,
    course: CourseSpec,
    *,
    file: str,
    anchor: Callable[[int | None], str],
) -> tuple[list[dict], list[dict]]:
    pages = _page_of_file(course)
    own = [problem_view(p, sources, anchor=anchor(p.line)) for p in problems if p.file == file]
    others = [problem_view(p, sources, href=pages.get(p.file, "")) for p in problems if p.file != file]
    return own, others


def lesson_page(course: CourseSpec, problems: list[CourseProblem], sources: SourceFiles, lesson: LessonSpec) -> Page:
    unit = next(unit for unit in course.units if unit.slug == lesson.unit_slug)
    own, others = _split_problems(problems, sources, course, file=lesson.file, anchor=section_anchor(lesson))
    previous, following = _neighbours(course, lesson)
    # The body was sanitised by the renderer; the graded previews are our template, escaped as usual.
    body = mark_safe(_graded_previews(lesson.html, lesson.quizzes))  # noqa: S308
    return Page(
        "courses/preview/lesson.html",
        {
            "course": course,
            "unit": unit,
            "unit_heading": unit_heading(course, unit),
            "lesson": lesson,
            "path": lesson_path(course, lesson),
            "body": body,
            "references": references_group(lesson.references_with_html()),
            "previous": previous,
            "next": following,
            "problems": own,
            "others": others,
        },
    )


def lab_page(course: CourseSpec, problems: list[CourseProblem], sources: SourceFiles, lab: LabEntry) -> Page:
    unit = next(unit for unit in course.units if unit.slug == lab.unit_slug)
    in_lab = [p for p in problems if p.file == lab.folder or p.file.startswith(lab.folder + "/")]
    pages = _page_of_file(course)
    body = mark_safe(lab.rendered.html if lab.rendered else "")  # noqa: S308 - sanitised by the renderer
    return Page(
        "courses/preview/lab.html",
        {
            "course": course,
            "unit": unit,
            "unit_heading": unit_heading(course, unit),
            "lab": lab,
            "title": lab.spec.title,
            "body": body,
            "toc": lab.rendered.toc if lab.rendered else [],
            "problems": [problem_view(p, sources) for p in in_lab],
            "others": [problem_view(p, sources, href=pages.get(p.file, "")) for p in problems if p not in in_lab],
        },
    )
