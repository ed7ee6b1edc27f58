"""Import a course directory into the database: validate, render what changed, then write in one transaction.

Rows are matched by stable keys (unit slug, unit + lesson slug, lesson + quiz key, lab slug) and updated in
place, so learners' progress and quiz attempts survive a re-import. Rendering happens before the transaction;
grader bundles and starter archives are content-addressed files written before it too (an aborted import only
leaves unreferenced, immutable files behind).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from courses.coursefs import CourseSpec, LabEntry, LessonSpec, Rendered, TreeDigest, load_course, tree_digest
from courses.errors import CourseInvalid, PlatformError
from courses.models import Course, Lesson, LessonProgress, Quiz, QuizAttempt, RenderedMarkdown, Unit
from labs.models import Lab, Revision

logger = logging.getLogger(__name__)

_CHUNK = 500  # stays well below SQLite's bound-parameter limit
_LESSON_FIELDS = [
    "unit",
    "position",
    "title",
    "tagline",
    "objective",
    "deliverable",
    "outcomes",
    "prerequisites",
    "estimated_minutes",
    "references",
    "source_path",
    "content_hash",
    "html",
    "toc",
]
_LAB_FIELDS = [
    "unit",
    "title",
    "source_path",
    "instructions_html",
    "toc",
    "spec",
    "content_hash",
    "grader_digest",
    "starter_digest",
    "max_revisions",
    "cooldown_seconds",
    "due_at",
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
    if not dry_run:
        for lab in spec.labs():
            _store_bundles(lab)
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
    units, removed_units = _units_upsert(course=course, spec=spec, report=report)
    _lessons_upsert(course=course, spec=spec, units=units, report=report)
    _labs_upsert(course=course, spec=spec, units=units, report=report)
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
        deliverable=lesson.deliverable,
        outcomes=lesson.outcomes,
        prerequisites=lesson.prerequisites,
        estimated_minutes=lesson.estimated_minutes,
        references=lesson.references,
        source_path=lesson.file,
        content_hash=lesson.content_hash,
        html=lesson.html,
        toc=lesson.toc,
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


def _labs_upsert(*, course: Course, spec: CourseSpec, units: dict[str, Unit], report: ImportReport) -> None:
    existing = {lab.slug: lab for lab in Lab.objects.filter(course=course)}
    for lab_spec in spec.labs():
        row = existing.pop(lab_spec.slug, None)
        values = _lab_values(lab_spec, unit=units[lab_spec.unit_slug])
        if row is None:
            Lab.objects.create(course=course, slug=lab_spec.slug, **values)
            report.added.append(f"lab {lab_spec.slug}")
        elif row.content_hash != lab_spec.content_hash or row.unit_id != values["unit"].id:
            for name, value in values.items():
                setattr(row, name, value)
            row.save(update_fields=_LAB_FIELDS)
            report.changed.append(f"lab {lab_spec.slug}")
        else:
            report.unchanged += 1
    removed = list(existing.values())
    for lab in removed:
        report.removed.append(f"lab {lab.slug}")
    if removed:
        report.learner_data_removed["lab revisions"] = Revision.objects.filter(lab__in=removed).count()
    _delete_in_chunks(Lab, [lab.id for lab in removed])


def _lab_values(lab: LabEntry, *, unit: Unit) -> dict:
    policy = lab.spec.policy
    return {
        "unit": unit,
        "title": lab.spec.title,
        "source_path": lab.folder,
        "instructions_html": lab.rendered.html if lab.rendered else "",
        "toc": lab.rendered.toc if lab.rendered else [],
        "spec": lab.spec.to_json(),
        "content_hash": lab.content_hash,
        "grader_digest": lab.grader_digest,
        "starter_digest": lab.starter.digest if lab.starter and lab.starter.files else "",
        "max_revisions": policy.max_revisions,
        "cooldown_seconds": policy.cooldown_seconds,
        "due_at": policy.due,
    }


def _units_delete(*, units: list[Unit], report: ImportReport) -> None:
    if not units:
        return
    # Their lessons were reported and counted by _lessons_upsert; their labs by _labs_upsert.
    for unit in units:
        report.removed.append(f"unit {unit.slug}")
    Unit.objects.filter(id__in=[unit.id for unit in units]).delete()


def _count_learner_data(report: ImportReport, *, lesson_ids: list[int]) -> None:
    progress = attempts = 0
    for chunk in _chunks(lesson_ids):
        progress += LessonProgress.objects.filter(lesson_id__in=chunk).count()
        attempts += QuizAttempt.objects.filter(quiz__lesson_id__in=chunk).count()
    data = report.learner_data_removed
    data["lesson progress records"] = data.get("lesson progress records", 0) + progress
    data["quiz attempts"] = data.get("quiz attempts", 0) + attempts


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
            blocks={"quizzes": rendered.quizzes, "links": rendered.links, "resolved": rendered.resolved},
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


def _store_bundles(lab: LabEntry) -> None:
    if lab.grader is not None and lab.grader.files:
        grader_store(tree=lab.grader)
    if lab.starter is not None and lab.starter.files:
        starter_store(tree=lab.starter)


def grader_store(*, tree: TreeDigest) -> Path:
    """Copy a grader folder to DATA_DIR/graders/<digest>/ unless that digest is already stored. Never overwrites."""
    base = Path(settings.DATA_DIR) / "graders"
    dest = base / tree.digest
    if dest.exists():
        return dest
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{tree.digest[:12]}-", dir=base))
    try:
        copied = []
        for rel, size, _sha, executable in tree.files:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tree.root / rel, target)
            target.chmod(0o555 if executable else 0o444)
            copied.append((rel, size, _sha256(target), executable))
        if tree_digest(copied) != tree.digest:
            raise PlatformError(f"{tree.root} changed while it was being imported; run the import again")
        try:
            tmp.rename(dest)
        except OSError:
            # Another import stored the same digest first: same content, keep theirs.
            if not dest.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def starter_store(*, tree: TreeDigest) -> Path:
    """Zip a starter folder deterministically to DATA_DIR/starters/<digest>.zip unless already stored."""
    base = Path(settings.DATA_DIR) / "starters"
    dest = base / f"{tree.digest}.zip"
    if dest.exists():
        return dest
    base.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{tree.digest[:12]}-", suffix=".zip", dir=base)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
            for rel, _size, _sha, executable in sorted(tree.files):
                # Fixed timestamps and modes: the same files always give the same bytes.
                info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3
                info.external_attr = (0o100755 if executable else 0o100644) << 16
                archive.writestr(info, (tree.root / rel).read_bytes(), compresslevel=6)
        with contextlib.suppress(FileExistsError):  # another import stored the same archive first
            os.link(tmp, dest)  # link, not rename: it fails rather than overwrite an existing archive
    finally:
        tmp.unlink(missing_ok=True)
    return dest


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
