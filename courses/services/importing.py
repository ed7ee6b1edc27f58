"""Import a course directory into the database: validate, render what changed, then write in one transaction.

Rows are matched by stable keys (unit slug, unit + lesson slug, lesson + quiz key, lab slug) and updated in
place, so learners' progress and quiz attempts survive a re-import. Rendering happens before the transaction;
grader bundles and starter archives are content-addressed files written before it too (an aborted import only
leaves unreferenced, immutable files behind). Course assets (images, figures, data files) are content-addressed
rows written inside the transaction, so every web host can serve them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from courses.coursefs import CourseSpec, LessonSpec, Rendered, load_course
from courses.coursefs.spec import AssetSpec
from courses.errors import CourseInvalid, CourseProblem
from courses.extensions import course_labs
from courses.models import (
    Course,
    CourseAsset,
    Lesson,
    LessonMark,
    LessonProgress,
    Quiz,
    QuizAttempt,
    RenderedMarkdown,
    Unit,
)

logger = logging.getLogger(__name__)

_CHUNK = 500  # stays well below SQLite's bound-parameter limit
_LESSON_FIELDS = [
    "unit",
    "position",
    "title",
    "tagline",
    "objective",
    "objective_detail",
    "deliverable",
    "deliverable_detail",
    "reflection",
    "outcomes",
    "prerequisites",
    "estimated_minutes",
    "references",
    "header_html",
    "source_path",
    "content_hash",
    "html",
    "toc",
    "code_cells",
]


@dataclass
class ImportReport:
    course_slug: str
    content_version: str
    dry_run: bool = False
    course_created: bool = False
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    reordered: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    rendered: int = 0  # Markdown documents rendered by this import (the rest came from the cache)
    assets_stored: int = 0  # course assets new to the database (the others were already stored by digest)
    learner_data_removed: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        verb = "would import" if self.dry_run else "imported"
        out = [f"{verb} course {self.course_slug} at content version {self.content_version}"]
        for label, items in (("added", self.added), ("changed", self.changed), ("removed", self.removed)):
            out += [f"  {label}: {item}" for item in items]
        if self.reordered:
            out.append(f"  reordered: {len(self.reordered)} item(s) moved position")
        lost = {k: v for k, v in self.learner_data_removed.items() if v}
        if lost:
            details = ", ".join(f"{count} {what}" for what, count in lost.items())
            out.append(f"  learner data removed with the removed items: {details}")
        out.append(
            f"{len(self.added)} added, {len(self.changed)} changed, {self.unchanged} unchanged, "
            f"{len(self.removed)} removed; {self.rendered} document(s) rendered"
        )
        if self.assets_stored:
            out.append(f"{self.assets_stored} new course asset(s) stored")
        return out


class DatabaseRenderCache:
    """`RenderCache` backed by `RenderedMarkdown` rows, looked up in a few bulk queries."""

    def lookup(self, keys: list[str]) -> dict[str, Rendered]:
        out: dict[str, Rendered] = {}
        for chunk in _chunks(keys):
            rows = RenderedMarkdown.objects.filter(content_hash__in=chunk).values_list(
                "content_hash", "html", "toc", "blocks"
            )
            for key, html, toc, blocks in rows:
                # Entries written by something other than this importer carry no link record: re-render those.
                if not isinstance(blocks, dict) or "resolved" not in blocks:
                    continue
                out[key] = Rendered(
                    html=html,
                    toc=toc,
                    quizzes=blocks.get("quizzes", []),
                    links=[(href, line) for href, line in blocks.get("links", [])],
                    resolved=blocks["resolved"],
                    fresh=False,
                    code_cells=blocks.get("code_cells", []),
                )
        return out


def course_import(*, path: str | os.PathLike[str], dry_run: bool = False) -> ImportReport:
    """Validate the course at `path` and bring the database in line with it, all or nothing.

    Raises `CourseInvalid` (carrying every problem) before touching the database when the course does not validate.
    """
    result = load_course(path, render_cache=DatabaseRenderCache())
    if result.problems or result.course is None:
        raise CourseInvalid(result.problems)
    spec = result.course
    report = ImportReport(course_slug=spec.slug, content_version=content_version(spec), dry_run=dry_run)
    report.rendered = sum(1 for doc in _documents(spec) if doc.fresh)
    labs = course_labs()
    if not dry_run and labs is not None:
        for lab in spec.labs():
            labs.lab_bundles_store(lab=lab)
    with transaction.atomic():
        _write(spec, report)
        if dry_run:
            transaction.set_rollback(True)
    logger.info(
        "course imported",
        extra={"course": spec.slug, "version": report.content_version, "dry_run": dry_run, "rendered": report.rendered},
    )
    return report


# --- the transaction -------------------------------------------------------------------------------------------


def _write(spec: CourseSpec, report: ImportReport) -> None:
    course, report.course_created = Course.objects.get_or_create(
        slug=spec.slug, defaults={"title": spec.title, "summary": spec.summary, "unit_label": spec.unit_label}
    )
    if report.course_created:
        report.added.append(f"course {spec.slug}")
    elif (course.title, course.summary, course.unit_label) != (spec.title, spec.summary, spec.unit_label):
        course.title, course.summary, course.unit_label = spec.title, spec.summary, spec.unit_label
        course.save(update_fields=["title", "summary", "unit_label"])
        report.changed.append(f"course {spec.slug}")
    _assets_store(spec=spec, report=report)
    units, removed_units = _units_upsert(course=course, spec=spec, report=report)
    _lessons_upsert(course=course, spec=spec, units=units, report=report)
    labs = course_labs()
    if labs is not None:
        labs.labs_upsert(course=course, labs=spec.labs(), units=units, report=report)
    _units_delete(units=removed_units, report=report)
    _render_cache_store(spec=spec)
    _course_finish(course=course, report=report)


def _units_upsert(*, course: Course, spec: CourseSpec, report: ImportReport) -> tuple[dict[str, Unit], list[Unit]]:
    existing = {unit.slug: unit for unit in Unit.objects.filter(course=course)}
    units: dict[str, Unit] = {}
    for unit_spec in spec.units:
        unit = existing.pop(unit_spec.slug, None)
        values = {
            "title": unit_spec.title,
            "summary": unit_spec.summary,
            "position": unit_spec.position,
            "number": unit_spec.number or unit_spec.position,
            "label": unit_spec.label,
            "track": unit_spec.track,
        }
        if unit is None:
            unit = Unit.objects.create(course=course, slug=unit_spec.slug, **values)
            report.added.append(f"unit {unit.slug}")
        elif any(getattr(unit, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(unit, name, value)
            unit.save(update_fields=list(values))
            report.changed.append(f"unit {unit.slug}")
        else:
            report.unchanged += 1
        units[unit_spec.slug] = unit
    return units, list(existing.values())


def _lessons_upsert(*, course: Course, spec: CourseSpec, units: dict[str, Unit], report: ImportReport) -> None:
    unit_slugs = dict(Unit.objects.filter(course=course).values_list("id", "slug"))  # removed units too
    existing = {
        (unit_slugs.get(row["unit_id"]), row["slug"]): row
        for row in Lesson.objects.filter(course=course).values("id", "unit_id", "slug", "position", "content_hash")
    }
    new: list[tuple[LessonSpec, Lesson]] = []
    changed: list[tuple[LessonSpec, Lesson]] = []
    moved: list[Lesson] = []
    for lesson_spec in spec.lessons():
        row = existing.pop((lesson_spec.unit_slug, lesson_spec.slug), None)
        unit = units[lesson_spec.unit_slug]
        label = f"lesson {lesson_spec.unit_slug}/{lesson_spec.slug}"
        if row is None:
            new.append((lesson_spec, _lesson_row(lesson_spec, course=course, unit=unit)))
            report.added.append(label)
        elif row["content_hash"] != lesson_spec.content_hash:
            changed.append((lesson_spec, _lesson_row(lesson_spec, course=course, unit=unit, pk=row["id"])))
            report.changed.append(label)
        elif row["position"] != lesson_spec.position:
            moved.append(Lesson(id=row["id"], position=lesson_spec.position))
            report.reordered.append(label)
            report.unchanged += 1
        else:
            report.unchanged += 1
    removed_ids = [row["id"] for row in existing.values()]
    report.removed += [f"lesson {unit_slug}/{slug}" for unit_slug, slug in existing]
    _count_learner_data(report, lesson_ids=removed_ids)
    _delete_in_chunks(Lesson, removed_ids)

    Lesson.objects.bulk_create([row for _, row in new], batch_size=_CHUNK)
    Lesson.objects.bulk_update([row for _, row in changed], _LESSON_FIELDS, batch_size=100)
    Lesson.objects.bulk_update(moved, ["position"], batch_size=_CHUNK)
    _quizzes_sync(new=new, changed=changed, report=report)


def _lesson_row(lesson: LessonSpec, *, course: Course, unit: Unit, pk: int | None = None) -> Lesson:
    return Lesson(
        id=pk,
        course=course,
        unit=unit,
        slug=lesson.slug,
        position=lesson.position,
        title=lesson.title,
        tagline=lesson.tagline,
        objective=lesson.objective,
        objective_detail=lesson.objective_detail,
        deliverable=lesson.deliverable,
        deliverable_detail=lesson.deliverable_detail,
        reflection=lesson.reflection,
        outcomes=lesson.outcomes,
        prerequisites=lesson.prerequisites,
        estimated_minutes=lesson.estimated_minutes,
        # Each reference keeps its rendered description next to it: the page groups references by kind.
        references=lesson.references_with_html(),
        header_html={key: value for key, value in lesson.header_html.items() if key != "reference_descriptions"},
        source_path=lesson.file,
        content_hash=lesson.content_hash,
        html=lesson.html,
        toc=lesson.toc,
        code_cells=lesson.code_cells,
    )


def _quizzes_sync(
    *, new: list[tuple[LessonSpec, Lesson]], changed: list[tuple[LessonSpec, Lesson]], report: ImportReport
) -> None:
    """Quizzes of new and changed lessons; unchanged lessons' quizzes are unchanged by construction."""
    existing: dict[tuple[int, str], Quiz] = {}
    for chunk in _chunks([row.id for _, row in changed]):
        for quiz in Quiz.objects.filter(lesson_id__in=chunk):
            existing[(quiz.lesson_id, quiz.key)] = quiz
    to_create, to_update = [], []
    changed_ids = {row.id: f"{spec.unit_slug}/{spec.slug}" for spec, row in changed}
    for lesson_spec, row in [*new, *changed]:
        for position, data in enumerate(lesson_spec.quizzes, start=1):
            values = {
                "title": data.get("title", ""),
                "graded": bool(data.get("graded")),
                "max_attempts": data.get("max_attempts"),
                "questions": data.get("questions", []),
                "position": position,
            }
            quiz = existing.pop((row.id, data["key"]), None)
            label = f"quiz {lesson_spec.unit_slug}/{lesson_spec.slug}#{data['key']}"
            if quiz is None:
                to_create.append(Quiz(lesson_id=row.id, key=data["key"], **values))
                if row.id in changed_ids:
                    report.added.append(label)
            elif any(getattr(quiz, name) != value for name, value in values.items()):
                for name, value in values.items():
                    setattr(quiz, name, value)
                to_update.append(quiz)
    removed = list(existing.values())
    for quiz in removed:
        report.removed.append(f"quiz {changed_ids[quiz.lesson_id]}#{quiz.key}")
    report.learner_data_removed["quiz attempts"] = report.learner_data_removed.get("quiz attempts", 0) + (
        QuizAttempt.objects.filter(quiz__in=removed).count() if removed else 0
    )
    _delete_in_chunks(Quiz, [quiz.id for quiz in removed])
    Quiz.objects.bulk_create(to_create, batch_size=_CHUNK)
    Quiz.objects.bulk_update(to_update, ["title", "graded", "max_attempts", "questions", "position"], batch_size=100)


def _units_delete(*, units: list[Unit], report: ImportReport) -> None:
    if not units:
        return
    # Their lessons were reported and counted by _lessons_upsert; their labs by the labs app's labs_upsert.
    for unit in units:
        report.removed.append(f"unit {unit.slug}")
    Unit.objects.filter(id__in=[unit.id for unit in units]).delete()


def _count_learner_data(report: ImportReport, *, lesson_ids: list[int]) -> None:
    progress = attempts = marks = 0
    for chunk in _chunks(lesson_ids):
        progress += LessonProgress.objects.filter(lesson_id__in=chunk).count()
        attempts += QuizAttempt.objects.filter(quiz__lesson_id__in=chunk).count()
        marks += LessonMark.objects.filter(lesson_id__in=chunk).count()
    data = report.learner_data_removed
    data["lesson progress records"] = data.get("lesson progress records", 0) + progress
    data["quiz attempts"] = data.get("quiz attempts", 0) + attempts
    data["reader marks"] = data.get("reader marks", 0) + marks


def _assets_store(*, spec: CourseSpec, report: ImportReport) -> None:
    """Insert the course's assets the database does not hold yet; a stored digest is never rewritten."""
    wanted = {asset.sha256: asset for asset in spec.assets.values()}
    stored: set[str] = set()
    for chunk in _chunks(sorted(wanted)):
        stored.update(CourseAsset.objects.filter(sha256__in=chunk).values_list("sha256", flat=True))
    rows = [_asset_row(asset) for digest, asset in sorted(wanted.items()) if digest not in stored]
    # One at a time: a few files of up to 5 MiB each, not worth holding all their bytes in one statement.
    for row in rows:
        CourseAsset.objects.bulk_create([row], ignore_conflicts=True)
    report.assets_stored = len(rows)


def _asset_row(asset: AssetSpec) -> CourseAsset:
    try:
        data = asset.source.read_bytes()
    except OSError as exc:
        raise CourseInvalid([_asset_problem(asset, f"cannot be read ({exc.strerror or exc})")]) from None
    # The file may have changed since the loader hashed it: the row must hold exactly what its digest names.
    if hashlib.sha256(data).hexdigest() != asset.sha256:
        raise CourseInvalid([_asset_problem(asset, "changed while the course was being imported")])
    return CourseAsset(sha256=asset.sha256, media_type=asset.media_type, size=len(data), data=data)


def _asset_problem(asset: AssetSpec, what: str) -> CourseProblem:
    return CourseProblem(asset.path, None, f"the course asset {asset.path} {what}", "Import the course again.")


def _render_cache_store(*, spec: CourseSpec) -> None:
    rows = {}
    for item in [*spec.lessons(), *spec.labs()]:
        rendered = item.rendered
        if rendered is None or not rendered.fresh:
            continue
        rows[item.render_key] = RenderedMarkdown(
            content_hash=item.render_key,
            html=rendered.html,
            toc=rendered.toc,
            blocks={
                "quizzes": rendered.quizzes,
                "links": rendered.links,
                "resolved": rendered.resolved,
                # A later import that finds this entry stores the cells on its lessons without rendering again.
                "code_cells": rendered.code_cells,
            },
        )
    RenderedMarkdown.objects.bulk_create(
        list(rows.values()),
        batch_size=_CHUNK,
        update_conflicts=True,
        unique_fields=["content_hash"],
        update_fields=["html", "toc", "blocks"],
    )


def _course_finish(*, course: Course, report: ImportReport) -> None:
    course.content_version = report.content_version
    course.imported_at = timezone.now()
    course.save(update_fields=["content_version", "imported_at"])


# --- content version and bundles ---------------------------------------------------------------------------------


def content_version(spec: CourseSpec) -> str:
    """The git commit of the course directory (with -dirty for uncommitted changes there), else a content hash."""
    root = str(spec.root)
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--is-inside-work-tree", "HEAD"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        words = head.stdout.split()
        if head.returncode == 0 and len(words) == 2 and words[0] == "true":
            status = subprocess.run(
                ["git", "-C", root, "status", "--porcelain", "--", "."],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            dirty = status.returncode != 0 or bool(status.stdout.strip())
            return words[1] + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        logger.warning("git unavailable, using a content hash as the course version", exc_info=True)
    return f"sha256:{spec.content_digest}"


# --- helpers -----------------------------------------------------------------------------------------------------


def _documents(spec: CourseSpec) -> Iterable[Rendered]:
    for item in [*spec.lessons(), *spec.labs()]:
        if item.rendered is not None:
            yield item.rendered


def _chunks(items: list, size: int = _CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _delete_in_chunks(model: type, ids: list[int]) -> None:
    for chunk in _chunks(ids):
        model.objects.filter(id__in=chunk).delete()
