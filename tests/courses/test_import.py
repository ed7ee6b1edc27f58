"""Importing a course into the database: all or nothing, in place by stable slugs, rendering only what changed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from courses.coursefs import loader
from courses.coursefs.spec import AssetSpec
from courses.errors import CourseInvalid
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
from courses.services import importing
from courses.services.importing import course_import
from labs.models import Lab
from tests.courses.test_coursefs import FIXTURES, GOOD, register_test_kinds

register_test_kinds()
pytestmark = pytest.mark.django_db


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    target = tmp_path / "course"
    shutil.copytree(GOOD, target)
    return target


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path / "data"
    return settings.DATA_DIR


@pytest.fixture
def render_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = loader.render_markdown

    def counting(source: str, **kwargs):
        calls.append(source)
        return real(source, **kwargs)

    monkeypatch.setattr(loader, "render_markdown", counting)
    return calls


def snapshot() -> dict:
    return {
        "courses": list(Course.objects.values_list("slug", "title", "content_version")),
        "units": list(Unit.objects.order_by("id").values_list("slug", "title", "position")),
        "lessons": list(Lesson.objects.order_by("id").values_list("id", "slug", "title", "content_hash")),
        "quizzes": list(Quiz.objects.order_by("id").values_list("id", "key", "questions")),
        "labs": list(Lab.objects.order_by("id").values_list("slug", "content_hash")),
        "rendered": RenderedMarkdown.objects.count(),
    }


def make_learner_data() -> tuple:
    user = get_user_model().objects.create_user("learner", password="pw-123456789")
    intro = Lesson.objects.get(slug="intro")
    progress = LessonProgress.objects.create(user=user, lesson=intro)
    quiz = Quiz.objects.get(lesson=intro, key="check-yourself")
    attempt = QuizAttempt.objects.create(quiz=quiz, user=user, answers={"q1": ["a"]}, score=1, max_score=1)
    return progress, attempt


def test_import_creates_the_course_units_lessons_quizzes_and_lab() -> None:
    report = course_import(path=GOOD)

    course = Course.objects.get(slug="fixture-course")
    assert (course.title, course.unit_label) == ("Fixture course", "Module")
    assert course.content_version and course.imported_at is not None
    assert list(course.units.values_list("slug", "position")) == [("unit-one", 1), ("unit-two", 2)]
    assert list(Lesson.objects.values_list("unit__slug", "slug", "position")) == [
        ("unit-one", "intro", 1),
        ("unit-one", "second", 2),
        ("unit-two", "deeper", 1),
    ]
    intro = Lesson.objects.get(slug="intro")
    assert intro.objective == "Read a lesson." and intro.outcomes == ["Know the layout"]
    assert "<table" in intro.html and intro.toc[0]["id"] == "first-steps"
    graded = Quiz.objects.get(key="unit-quiz")
    assert (graded.graded, graded.max_attempts, graded.lesson.slug) == (True, 2, "second")
    lab = Lab.objects.get(slug="hello-lab")
    policy = lab.labspec.policy
    assert (lab.unit.slug, policy.max_revisions, policy.cooldown_seconds) == ("unit-two", 5, 10)
    assert policy.due.isoformat() == "2030-01-31T23:59:00+00:00"
    assert lab.spec["checks"][1]["visibility"] == "hidden"
    assert "lesson intro" not in report.added and "lesson unit-one/intro" in report.added
    assert report.rendered == 4  # three lessons and the lab's instructions


def test_import_stores_the_grader_bundle_by_digest_and_a_deterministic_starter_zip(data_dir: Path) -> None:
    course_import(path=GOOD)

    lab = Lab.objects.get(slug="hello-lab")
    bundle = data_dir / "graders" / lab.grader_digest
    assert (bundle / "test_hidden.py").read_text() == (GOOD / "unit-two/hello-lab/grader/test_hidden.py").read_text()
    archive = data_dir / "starters" / f"{lab.starter_digest}.zip"
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == ["main.py"]
        assert zf.getinfo("main.py").date_time == (1980, 1, 1, 0, 0, 0)
    first_bytes = archive.read_bytes()
    archive.unlink()
    course_import(path=GOOD)
    assert hashlib.sha256(archive.read_bytes()).digest() == hashlib.sha256(first_bytes).digest()


def test_an_existing_grader_digest_is_never_overwritten(data_dir: Path) -> None:
    course_import(path=GOOD)
    lab = Lab.objects.get(slug="hello-lab")
    stored = data_dir / "graders" / lab.grader_digest / "test_hidden.py"
    stored.chmod(0o644)
    stored.write_text("# already stored\n")

    course_import(path=GOOD)

    assert stored.read_text() == "# already stored\n"


def test_an_invalid_course_is_not_imported_and_the_database_is_untouched() -> None:
    with pytest.raises(CourseInvalid) as caught:
        course_import(path=FIXTURES / "broken-many")

    assert any(p.file == "unit-a/01-first.md" and p.line == 3 for p in caught.value.problems)
    assert Course.objects.count() == 0 and RenderedMarkdown.objects.count() == 0


def test_import_course_command_exits_1_on_problems(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_course", str(FIXTURES / "broken-many"))

    assert "unit-a/01-first.md:3:" in capsys.readouterr().out
    assert Course.objects.count() == 0


def test_import_is_all_or_nothing_when_a_late_step_fails(course_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    course_import(path=course_dir)
    before = snapshot()
    (course_dir / "unit-one/01-intro.md").write_text("---\ntitle: Rewritten\n---\n## New\n")
    (course_dir / "unit-one/03-new.md").write_text("---\ntitle: New lesson\n---\nNew.\n")
    shutil.rmtree(course_dir / "unit-two/hello-lab")

    def boom(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(importing, "_course_finish", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        course_import(path=course_dir)

    assert snapshot() == before


def test_reimport_keeps_lesson_progress_and_quiz_attempts(course_dir: Path) -> None:
    course_import(path=course_dir)
    progress, attempt = make_learner_data()
    intro = course_dir / "unit-one/01-intro.md"
    intro.write_text(intro.read_text().replace("Where it starts", "A new tagline") + "\nMore text.\n")

    report = course_import(path=course_dir)

    assert report.changed == ["lesson unit-one/intro"]
    assert LessonProgress.objects.filter(id=progress.id, lesson__tagline="A new tagline").exists()
    assert QuizAttempt.objects.filter(id=attempt.id, quiz__key="check-yourself").exists()


def test_reimport_of_an_unchanged_course_renders_nothing_and_writes_no_lesson_rows(render_calls: list[str]) -> None:
    course_import(path=GOOD)
    render_calls.clear()

    with CaptureQueriesContext(connection) as queries:
        report = course_import(path=GOOD)

    assert render_calls == []
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert not [sql for sql in writes if "courses_lesson" in sql or "courses_quiz" in sql or "labs_lab" in sql]
    assert (report.added, report.changed, report.removed, report.rendered) == ([], [], [], 0)
    assert report.unchanged == 2 + 3 + 1  # units, lessons, lab


def test_changing_one_lesson_rerenders_only_that_lesson(course_dir: Path, render_calls: list[str]) -> None:
    course_import(path=course_dir)
    render_calls.clear()
    deeper = course_dir / "unit-two/01-deeper.md"
    deeper.write_text(deeper.read_text() + "\nA new paragraph.\n")

    report = course_import(path=course_dir)

    assert len(render_calls) == 1 and "A new paragraph." in render_calls[0]
    assert report.changed == ["lesson unit-two/deeper"]
    assert "A new paragraph." in Lesson.objects.get(slug="deeper").html


def test_a_renamed_link_target_rerenders_the_lessons_linking_to_it(course_dir: Path) -> None:
    course_import(path=course_dir)
    deeper = course_dir / "unit-two/01-deeper.md"
    deeper.write_text(deeper.read_text().replace("title: Going deeper\n", "title: Going deeper\nslug: details\n"))
    lab = course_dir / "unit-two/hello-lab/lab.yaml"
    lab.write_text(lab.read_text().replace("unit-two/deeper#", "unit-two/details#"))

    report = course_import(path=course_dir)

    assert report.added == ["lesson unit-two/details"] and report.removed == ["lesson unit-two/deeper"]

    assert "/courses/fixture-course/unit-two/details/#the-details" in Lesson.objects.get(slug="intro").html


def test_a_removed_lesson_is_reported_and_its_learner_data_goes_with_it(course_dir: Path) -> None:
    course_import(path=course_dir)
    make_learner_data()
    (course_dir / "unit-one/01-intro.md").unlink()
    deeper = course_dir / "unit-two/01-deeper.md"
    deeper.write_text(deeper.read_text().replace("[the start](../unit-one/01-intro.md)", "the start"))

    report = course_import(path=course_dir)

    assert report.removed == ["lesson unit-one/intro"]
    assert report.learner_data_removed["lesson progress records"] == 1
    assert report.learner_data_removed["quiz attempts"] == 1
    assert not Lesson.objects.filter(slug="intro").exists()
    assert LessonProgress.objects.count() == 0
    assert any("learner data removed" in line for line in report.lines())


def test_a_removed_quiz_is_reported_and_the_others_kept(course_dir: Path) -> None:
    course_import(path=course_dir)
    second = course_dir / "unit-one/02-second.md"
    second.write_text("---\ntitle: Second lesson\n---\n## No quiz any more\n")

    report = course_import(path=course_dir)

    assert "quiz unit-one/second#unit-quiz" in report.removed
    assert list(Quiz.objects.values_list("key", flat=True)) == ["check-yourself"]


def test_dry_run_writes_nothing(data_dir: Path) -> None:
    report = course_import(path=GOOD, dry_run=True)

    assert "lesson unit-one/intro" in report.added
    assert Course.objects.count() == Lesson.objects.count() == RenderedMarkdown.objects.count() == 0
    assert not data_dir.exists() or not any(data_dir.iterdir())


def test_content_version_is_a_content_hash_outside_git_and_the_commit_inside(course_dir: Path) -> None:
    outside = course_import(path=course_dir).content_version
    assert outside.startswith("sha256:") and len(outside) == 71

    git = ["git", "-C", str(course_dir), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "course"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert course_import(path=course_dir).content_version == head

    (course_dir / "unit-one/01-intro.md").write_text("---\ntitle: Edited\n---\n")
    assert course_import(path=course_dir).content_version == f"{head}-dirty"
    assert Course.objects.get().content_version == f"{head}-dirty"


def test_import_course_command_prints_what_changed(course_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("import_course", str(course_dir))
    (course_dir / "unit-one/03-extra.md").write_text("---\ntitle: Extra\n---\nExtra.\n")

    call_command("import_course", str(course_dir))

    out = capsys.readouterr().out
    assert "added: lesson unit-one/extra" in out
    assert "1 added, 0 changed, 6 unchanged, 0 removed; 1 document(s) rendered" in out
    assert "content version sha256:" in out


# --- issue 13: unit labels and tracks, second lines, reflection, course assets, reader marks --------------------

FIGURE = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4 4"><rect width="4" height="4"/></svg>'


@pytest.fixture
def with_spec_extras(monkeypatch: pytest.MonkeyPatch):
    """Add to what the loader reads: unit labels and tracks, lesson second lines and reflection, and the assets
    of `extras["assets"]` ({path: file}), built as the loader builds them (hashed when the course is read)."""
    extras: dict = {"assets": {}}
    real = importing.load_course

    def load(path, **kwargs):
        result = real(path, **kwargs)
        spec = result.course
        spec.units[1].label, spec.units[1].track = "Essay", "Advanced mastery"
        intro = spec.lessons()[0]
        intro.objective_detail, intro.deliverable_detail = "A second line.", "Another second line."
        intro.reflection = "What surprised you?"
        for rel, file in extras["assets"].items():
            data = file.read_bytes()
            spec.assets[rel] = AssetSpec(
                path=rel,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                media_type="image/svg+xml",
                kind="image",
                source=file,
            )
        return result

    monkeypatch.setattr(importing, "load_course", load)
    return extras


def test_import_writes_unit_labels_tracks_second_lines_and_the_reflection(with_spec_extras) -> None:
    course_import(path=GOOD)

    units = dict(Unit.objects.values_list("slug", "label"))
    assert units == {"unit-one": "", "unit-two": "Essay"}
    essay = Unit.objects.select_related("course").get(slug="unit-two")
    assert (essay.track, essay.display_label) == ("Advanced mastery", "Essay")
    assert Unit.objects.select_related("course").get(slug="unit-one").display_label == "Module"
    intro = Lesson.objects.get(slug="intro")
    assert (intro.objective_detail, intro.deliverable_detail) == ("A second line.", "Another second line.")
    assert intro.reflection == "What surprised you?"


def test_import_writes_the_rendered_front_matter_and_each_reference_description(course_dir: Path) -> None:
    intro = course_dir / "unit-one/01-intro.md"
    text = intro.read_text().replace("  - Know the layout\n", "  - Know the `layout`\n")
    intro.write_text(
        text.replace(
            "    url: https://docs.python.org/3/\n",
            "    url: https://docs.python.org/3/\n    description: The *tutorial* first\n",
        )
    )

    course_import(path=course_dir)

    lesson = Lesson.objects.get(slug="intro")
    assert lesson.outcomes == ["Know the `layout`"]  # the text as written, for titles and the admin
    assert lesson.header_html["outcomes"] == ["Know the <code>layout</code>"]
    assert lesson.header_html["tagline"] == "Where it starts"
    assert lesson.references[0]["description"] == "The *tutorial* first"
    assert lesson.references[0]["description_html"] == "The <em>tutorial</em> first"


def test_a_change_that_only_touches_the_rendered_front_matter_updates_the_row(course_dir: Path) -> None:
    write_intro = course_dir / "unit-one/01-intro.md"
    write_intro.write_text(write_intro.read_text().replace("  - None\n", "  - The [second](02-second.md)\n"))
    course_import(path=course_dir)
    second = course_dir / "unit-one/02-second.md"
    second.write_text(second.read_text().replace("title: Second lesson\n", "title: Second lesson\nslug: graded\n"))

    report = course_import(path=course_dir)

    assert "lesson unit-one/intro" in report.changed
    prerequisite = Lesson.objects.get(slug="intro").header_html["prerequisites"][0]
    assert 'href="/courses/fixture-course/unit-one/graded/"' in prerequisite


def test_course_assets_are_stored_once_by_digest(with_spec_extras, course_dir: Path) -> None:
    figure = course_dir / "unit-one/figures/flow.svg"
    figure.parent.mkdir()
    figure.write_bytes(FIGURE)
    copy = course_dir / "unit-two/same-flow.svg"
    copy.write_bytes(FIGURE)  # the same bytes under another name: one row
    with_spec_extras["assets"] = {"unit-one/figures/flow.svg": figure, "unit-two/same-flow.svg": copy}

    first = course_import(path=course_dir)
    second = course_import(path=course_dir)

    row = CourseAsset.objects.get()
    assert (row.sha256, row.media_type, row.size) == (hashlib.sha256(FIGURE).hexdigest(), "image/svg+xml", len(FIGURE))
    assert bytes(row.data) == FIGURE
    assert (first.assets_stored, second.assets_stored) == (1, 0)
    assert "1 new course asset(s) stored" in first.lines()


def test_a_dry_run_stores_no_asset(with_spec_extras, course_dir: Path) -> None:
    figure = course_dir / "figure.svg"
    figure.write_bytes(FIGURE)
    with_spec_extras["assets"] = {"figure.svg": figure}

    report = course_import(path=course_dir, dry_run=True)

    assert report.assets_stored == 1  # what the import would store
    assert CourseAsset.objects.count() == 0 and Course.objects.count() == 0


def test_an_asset_changed_after_it_was_hashed_is_refused_and_nothing_is_written(
    with_spec_extras, course_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figure = course_dir / "figure.svg"
    figure.write_bytes(FIGURE)
    with_spec_extras["assets"] = {"figure.svg": figure}
    loading = importing.load_course

    def load_then_edit(path, **kwargs):
        result = loading(path, **kwargs)
        figure.write_bytes(FIGURE + b"\n<!-- edited while importing -->")
        return result

    monkeypatch.setattr(importing, "load_course", load_then_edit)
    with pytest.raises(CourseInvalid) as refused:
        course_import(path=course_dir)

    assert refused.value.problems[0].format() == (
        "figure.svg: the course asset figure.svg changed while the course was being imported "
        "(hint: Import the course again.)"
    )
    assert CourseAsset.objects.count() == 0 and Course.objects.count() == 0


def test_reader_marks_of_a_removed_lesson_are_counted_as_learner_data(course_dir: Path) -> None:
    course_import(path=course_dir)
    progress, _ = make_learner_data()
    LessonMark.objects.create(user=progress.user, lesson=progress.lesson, key="checklist:1", value=[0])
    (course_dir / "unit-one/01-intro.md").unlink()
    deeper = course_dir / "unit-two/01-deeper.md"
    deeper.write_text(deeper.read_text().replace("[the start](../unit-one/01-intro.md)", "the start"))

    report = course_import(path=course_dir)

    assert report.learner_data_removed["reader marks"] == 1
    assert not LessonMark.objects.exists()
    assert any("1 reader marks" in line for line in report.lines())


def test_a_figure_changed_on_disk_gets_a_new_url_in_the_lesson_and_a_new_row(course_dir: Path) -> None:
    figure = course_dir / "unit-one/figures/flow.svg"
    figure.parent.mkdir()
    figure.write_bytes(FIGURE)
    intro = course_dir / "unit-one/01-intro.md"
    intro.write_text(intro.read_text() + "\n![The request flow](figures/flow.svg)\n")
    old_url = f"/course-assets/{hashlib.sha256(FIGURE).hexdigest()}/flow.svg"

    course_import(path=course_dir)
    assert f'<img src="{old_url}" alt="The request flow" loading="lazy">' in Lesson.objects.get(slug="intro").html
    changed = FIGURE.replace(b'width="4"', b'width="2"')
    figure.write_bytes(changed)  # the lesson's Markdown is untouched

    report = course_import(path=course_dir)

    new_url = f"/course-assets/{hashlib.sha256(changed).hexdigest()}/flow.svg"
    html = Lesson.objects.get(slug="intro").html
    assert new_url in html and old_url not in html
    assert report.changed == ["lesson unit-one/intro"]
    assert CourseAsset.objects.count() == 2  # pages cached with the old URL still find the old figure
