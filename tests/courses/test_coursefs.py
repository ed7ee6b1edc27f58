"""Reading and validating a course directory: every problem kind names its file and line and says how to fix it.

These tests carry no database mark: pytest-django blocks database access in them, so they also prove that
`load_course` and `validate_course` never touch the database.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from courses.coursefs import load_course
from courses.coursefs.loader import MAX_TEXT_BYTES
from courses.errors import CourseProblem
from labs.checks.base import CHECK_KINDS, Check, register

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "courses"
GOOD = FIXTURES / "good"
LAB = "unit-two/hello-lab/lab.yaml"


class EchoCheck(Check):
    """Test-only kind: takes an optional `text` argument."""

    kind = "test.echo"

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        return [f"unknown argument {key!r}; test.echo takes only `text`" for key in args if key != "text"]


class HiddenSuiteCheck(Check):
    """Test-only kind that reads the grader folder."""

    kind = "test.hidden_suite"
    needs_grader: ClassVar[bool] = True


def register_test_kinds() -> None:
    for cls in (EchoCheck, HiddenSuiteCheck):
        if cls.kind not in CHECK_KINDS:
            register(cls)


register_test_kinds()


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    target = tmp_path / "course"
    shutil.copytree(GOOD, target)
    return target


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def lesson(front: str, body: str = "## Body\n\nText.\n") -> str:
    return f"---\n{front}---\n{body}"


def the_problem(root: Path, *, file: str, containing: str) -> CourseProblem:
    problems = load_course(root).problems
    found = [p for p in problems if p.file == file and containing in p.message]
    assert len(found) == 1, f"expected one problem in {file} about {containing!r}, got: {problems}"
    assert found[0].hint.strip(), "every problem carries a fix hint"
    return found[0]


# --- the good course ----------------------------------------------------------------------------------------


def test_the_fixture_course_loads_into_plain_dataclasses_without_problems() -> None:
    result = load_course(GOOD)

    assert result.problems == []
    course = result.course
    assert (course.slug, course.unit_label) == ("fixture-course", "Module")
    assert [u.slug for u in course.units] == ["unit-one", "unit-two"]
    intro, second = course.units[0].lessons
    assert (intro.slug, intro.position, second.slug, second.position) == ("intro", 1, "second", 2)
    assert intro.references == [
        {"kind": "official-doc", "title": "Python docs", "url": "https://docs.python.org/3/", "description": ""}
    ]
    assert intro.estimated_minutes == 10
    assert '/courses/fixture-course/unit-two/deeper/#the-details"' in intro.html
    assert [q["key"] for q in intro.quizzes] == ["check-yourself"]
    assert second.quizzes[0]["graded"] is True
    assert intro.toc[0]["id"] == "first-steps"


def test_a_lab_spec_gets_defaults_and_its_lesson_link_resolved() -> None:
    lab = load_course(GOOD).course.labs()[0]

    assert (lab.slug, lab.unit_slug, lab.folder) == ("hello-lab", "unit-two", "unit-two/hello-lab")
    spec = lab.spec
    assert spec.limits.wall_seconds == 60 and spec.limits.memory_mb == 256  # given / default
    assert spec.files.max_files == 100
    assert spec.checks[0].lesson_url == "/courses/fixture-course/unit-two/deeper/#the-details"
    assert spec.checks[1].visibility == "hidden"
    assert spec.policy.due.isoformat() == "2030-01-31T23:59:00+00:00"
    assert spec.to_json()["run"] == {"command": ["python", "main.py"]}
    assert [f[0] for f in lab.grader.files] == ["test_hidden.py"]
    assert [f[0] for f in lab.starter.files] == ["main.py"]
    assert '/courses/fixture-course/unit-two/deeper/#the-details"' in lab.rendered.html


# --- YAML and fields ----------------------------------------------------------------------------------------


def test_it_reports_bad_yaml_in_course_yaml_at_the_error_line(course_dir: Path) -> None:
    write(course_dir, "course.yaml", "slug: x\ntitle: X\nunits:\n  - slug: unit-one\n   title: bad indent\n")

    problem = the_problem(course_dir, file="course.yaml", containing="invalid course.yaml")
    assert problem.line == 5


def test_it_reports_bad_yaml_in_front_matter_at_the_file_line(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-bad.md", "---\ntitle: ok\ntagline: [unclosed\n---\nBody\n")

    problem = the_problem(course_dir, file="unit-one/03-bad.md", containing="invalid front matter")
    assert problem.line in (3, 4)  # the parser notices at the end of the flow sequence


def test_it_reports_a_missing_required_field(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-untitled.md", lesson("tagline: no title here\n"))

    problem = the_problem(course_dir, file="unit-one/03-untitled.md", containing="required field 'title'")
    assert problem.line == 2
    assert "title:" in problem.hint


def test_it_reports_a_missing_course_field_at_the_mapping(course_dir: Path) -> None:
    write(course_dir, "course.yaml", "slug: fixture-course\nunits:\n  - slug: unit-one\n    title: One\n")

    problem = the_problem(course_dir, file="course.yaml", containing="required field 'title'")
    assert problem.line == 1


def test_it_suggests_the_closest_known_name_for_an_unknown_field(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-typo.md", lesson("title: Typo\nobjectve: misspelt\n"))

    problem = the_problem(course_dir, file="unit-one/03-typo.md", containing="unknown field 'objectve'")
    assert problem.line == 3
    assert "'objective'" in problem.hint


def test_it_reports_an_invalid_field_value(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-minutes.md", lesson("title: T\nestimated_minutes: soon\n"))

    problem = the_problem(course_dir, file="unit-one/03-minutes.md", containing="estimated_minutes")
    assert problem.line == 3


def test_it_reports_an_unknown_reference_kind(course_dir: Path) -> None:
    front = "title: T\nreferences:\n  - kind: blogpost\n    url: https://example.org/\n"
    write(course_dir, "unit-one/03-refs.md", lesson(front))

    problem = the_problem(course_dir, file="unit-one/03-refs.md", containing="unknown kind 'blogpost'")
    assert problem.line == 4
    assert "official-doc" in problem.hint


def test_it_reports_a_lesson_without_front_matter(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-bare.md", "# Just a heading\n")

    problem = the_problem(course_dir, file="unit-one/03-bare.md", containing="no front matter")
    assert problem.line == 1


def test_it_reports_a_duplicated_yaml_key(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-dup.md", lesson("title: One\ntitle: Two\n"))

    problem = the_problem(course_dir, file="unit-one/03-dup.md", containing="appears twice")
    assert problem.line == 3


# --- blocks and links ---------------------------------------------------------------------------------------


def test_it_reports_an_unknown_callout_kind_at_its_file_line(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-callout.md", lesson("title: T\n", "Intro.\n\n::: danger\nText.\n:::\n"))

    problem = the_problem(course_dir, file="unit-one/03-callout.md", containing="unknown callout kind")
    assert problem.line == 6


def test_it_reports_a_misspelt_block_fence(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-fence.md", lesson("title: T\n", "Intro.\n\n```quizz\nid: x\n```\n"))

    problem = the_problem(course_dir, file="unit-one/03-fence.md", containing="unknown block type 'quizz'")
    assert problem.line == 6
    assert "quiz" in problem.hint


def test_block_errors_from_the_renderer_point_at_file_lines(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-quiz.md", lesson("title: T\n", "Intro.\n\n```quiz\ntitle: Empty\n```\n"))

    problem = the_problem(course_dir, file="unit-one/03-quiz.md", containing="questions")
    assert 6 <= problem.line <= 7


def test_it_reports_duplicate_quiz_ids(course_dir: Path) -> None:
    quiz = "```quiz\nid: same\nquestions:\n  - prompt: P\n    choices:\n      - text: a\n        correct: true\n```\n\n"
    write(course_dir, "unit-one/03-quizzes.md", lesson("title: T\n", quiz + quiz))

    problem = the_problem(course_dir, file="unit-one/03-quizzes.md", containing="duplicate quiz id")
    assert problem.line == 14


def test_it_reports_a_broken_link_to_a_missing_lesson(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-link.md", lesson("title: T\n", "One.\n\nSee [x](../unit-two/05-nope.md).\n"))

    problem = the_problem(course_dir, file="unit-one/03-link.md", containing="broken internal link")
    assert problem.line == 6


def test_it_reports_a_link_to_a_missing_section(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-anchor.md", lesson("title: T\n", "See [x](../unit-two/01-deeper.md#nope).\n"))

    problem = the_problem(course_dir, file="unit-one/03-anchor.md", containing="no section with the id 'nope'")
    assert problem.line == 4
    assert "the-details" in problem.hint


# --- structure ----------------------------------------------------------------------------------------------


def test_it_reports_duplicate_unit_slugs(course_dir: Path) -> None:
    text = "slug: c\ntitle: C\nunits:\n  - slug: unit-one\n    title: A\n  - slug: unit-one\n    title: B\n"
    write(course_dir, "course.yaml", text)

    problem = the_problem(course_dir, file="course.yaml", containing="listed twice")
    assert problem.line == 6


def test_it_reports_duplicate_lesson_slugs_in_a_unit(course_dir: Path) -> None:
    write(course_dir, "unit-one/05-intro.md", lesson("title: Another intro\n"))

    problem = the_problem(course_dir, file="unit-one/05-intro.md", containing="lesson slug 'intro'")
    assert problem.line == 1
    assert "unit-one/01-intro.md" in problem.message


def test_it_reports_a_listed_unit_whose_folder_is_missing(course_dir: Path) -> None:
    shutil.rmtree(course_dir / "unit-one")

    problem = the_problem(course_dir, file="course.yaml", containing="folder unit-one/ does not exist")
    assert problem.line == 6


def test_it_reports_a_lesson_folder_not_listed_in_course_yaml(course_dir: Path) -> None:
    write(course_dir, "unit-three/01-orphan.md", lesson("title: Orphan\n"))

    problem = the_problem(course_dir, file="unit-three/", containing="not listed in course.yaml")
    assert problem.line is None
    assert "- slug: unit-three" in problem.hint


def test_it_reports_duplicate_lab_slugs(course_dir: Path) -> None:
    shutil.copytree(course_dir / "unit-two" / "hello-lab", course_dir / "unit-one" / "hello-lab")

    problem = the_problem(course_dir, file=LAB, containing="lab slug 'hello-lab'")
    assert problem.line == 1


# --- labs ---------------------------------------------------------------------------------------------------


def lab_yaml(checks: str = "", extra: str = "") -> str:
    checks = checks or "  - id: says-hello\n    kind: test.echo\n"
    return f"title: Hello lab\nchecks:\n{checks}{extra}"


def test_it_reports_an_unknown_check_kind_with_the_closest_name(course_dir: Path) -> None:
    write(course_dir, LAB, lab_yaml("  - id: a\n    kind: test.ecko\n"))

    problem = the_problem(course_dir, file=LAB, containing="unknown check kind 'test.ecko'")
    assert problem.line == 4
    assert "test.echo" in problem.hint


def test_it_reports_bad_check_arguments_from_the_kind(course_dir: Path) -> None:
    write(course_dir, LAB, lab_yaml("  - id: a\n    kind: test.echo\n    args:\n      txt: hi\n"))

    problem = the_problem(course_dir, file=LAB, containing="unknown argument 'txt'")
    assert problem.line == 5


def test_it_reports_duplicate_check_ids(course_dir: Path) -> None:
    checks = "  - id: a\n    kind: test.echo\n  - id: a\n    kind: test.echo\n"
    write(course_dir, LAB, lab_yaml(checks))

    problem = the_problem(course_dir, file=LAB, containing="check id 'a' is used twice")
    assert problem.line == 5


def test_it_reports_a_non_positive_limit(course_dir: Path) -> None:
    write(course_dir, LAB, lab_yaml(extra="limits:\n  memory_mb: 0\n"))

    problem = the_problem(course_dir, file=LAB, containing="'memory_mb' is 0")
    assert problem.line == 6


def test_it_reports_a_wall_time_above_the_platform_maximum(course_dir: Path) -> None:
    limit = settings.GRADING_MAX_WALL_SECONDS + 1
    write(course_dir, LAB, lab_yaml(extra=f"limits:\n  cpus: 1\n  wall_seconds: {limit}\n"))

    problem = the_problem(course_dir, file=LAB, containing="platform maximum")
    assert problem.line == 7
    assert "GRADING_MAX_WALL_SECONDS" in problem.hint


def test_it_reports_a_bad_glob(course_dir: Path) -> None:
    write(course_dir, LAB, lab_yaml(extra='files:\n  allowed: ["*.py", "../secret"]\n'))

    problem = the_problem(course_dir, file=LAB, containing="bad glob '../secret'")
    assert problem.line == 6


def test_it_reports_a_required_file_no_allowed_glob_matches(course_dir: Path) -> None:
    write(course_dir, LAB, lab_yaml(extra='files:\n  required: [main.go]\n  allowed: ["*.py"]\n'))

    problem = the_problem(course_dir, file=LAB, containing="'main.go' is not matched")
    assert problem.line == 6


def test_it_reports_a_due_date_without_a_time_zone(course_dir: Path) -> None:
    write(course_dir, LAB, lab_yaml(extra="policy:\n  cooldown_seconds: 5\n  due: 2030-01-31 23:59\n"))

    problem = the_problem(course_dir, file=LAB, containing="due")
    assert problem.line == 7
    assert "2026-12-31T23:59:00Z" in problem.hint


def test_it_reports_an_unknown_category_and_visibility(course_dir: Path) -> None:
    check = "  - id: a\n    kind: test.echo\n    category: corectness\n    visibility: secret\n"
    write(course_dir, LAB, lab_yaml(check))

    category = the_problem(course_dir, file=LAB, containing="unknown category")
    visibility = the_problem(course_dir, file=LAB, containing="unknown visibility")
    assert (category.line, visibility.line) == (5, 6)
    assert "'correctness'" in category.hint


def test_it_reports_a_check_lesson_link_that_does_not_resolve(course_dir: Path) -> None:
    checks = "  - id: a\n    kind: test.echo\n    lesson: unit-two/deeper#nowhere\n  - id: b\n    kind: test.echo\n"
    write(course_dir, LAB, lab_yaml(checks + "    lesson: unit-nine/intro\n"))

    section = the_problem(course_dir, file=LAB, containing="section 'nowhere'")
    lesson_ = the_problem(course_dir, file=LAB, containing="'unit-nine/intro'")
    assert (section.line, lesson_.line) == (5, 8)


def test_it_reports_a_missing_grader_folder_when_a_check_needs_it(course_dir: Path) -> None:
    shutil.rmtree(course_dir / "unit-two" / "hello-lab" / "grader")

    problem = the_problem(course_dir, file=LAB, containing="grader/ is missing")
    assert problem.line == 14  # the hidden-suite check's entry


def test_it_reports_a_missing_instructions_file(course_dir: Path) -> None:
    (course_dir / "unit-two" / "hello-lab" / "instructions.md").unlink()

    problem = the_problem(course_dir, file="unit-two/hello-lab/instructions.md", containing="file is missing")
    assert problem.line is None


# --- safe reading -------------------------------------------------------------------------------------------


def test_it_does_not_follow_a_symlink_out_of_the_course(course_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.md"
    secret.write_text(lesson("title: Secret outside\n"))
    (course_dir / "unit-one" / "03-link.md").symlink_to(secret)

    result = load_course(course_dir)

    problem = the_problem(course_dir, file="unit-one/03-link.md", containing="outside the course")
    assert problem.line is None
    assert all(lesson_.title != "Secret outside" for lesson_ in result.course.lessons())


def test_it_reports_a_file_above_the_size_cap(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-huge.md", lesson("title: Huge\n", "x" * (MAX_TEXT_BYTES + 1)))

    problem = the_problem(course_dir, file="unit-one/03-huge.md", containing="byte limit")
    assert problem.line is None


def test_it_reports_a_file_that_is_not_utf8(course_dir: Path) -> None:
    (course_dir / "unit-one" / "03-latin1.md").write_bytes(b"---\ntitle: caf\xe9\n---\n")

    problem = the_problem(course_dir, file="unit-one/03-latin1.md", containing="not valid UTF-8")
    assert problem.line == 2


# --- collecting everything and the command -------------------------------------------------------------------


def test_it_collects_every_problem_instead_of_stopping_at_the_first() -> None:
    problems = load_course(FIXTURES / "broken-many").problems

    found = {(p.file, p.line, p.message.split(":")[0]) for p in problems}
    assert ("course.yaml", 3, "unknown field 'unit_lable' in course.yaml") in found
    assert any(p.file == "course.yaml" and "unit-missing" in p.message for p in problems)
    assert any(p.file == "stray/" for p in problems)
    assert any(p.file == "unit-a/01-first.md" and p.line == 3 and "objectve" in p.message for p in problems)
    assert any(p.file == "unit-a/01-first.md" and p.line == 7 and "broken internal link" in p.message for p in problems)
    assert any(p.file == "unit-a/01-first.md" and p.line == 9 and "callout" in p.message for p in problems)
    assert any(p.file == "unit-a/02-first.md" and "lesson slug 'first'" in p.message for p in problems)
    assert any(p.file == "unit-a/03-bad-yaml.md" and p.line == 3 for p in problems)
    assert all(p.hint for p in problems)


def test_validate_course_exits_1_and_prints_file_line_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CommandError, match="problem"):
        call_command("validate_course", str(FIXTURES / "broken-many"))

    out = capsys.readouterr().out
    assert "unit-a/01-first.md:3: unknown field 'objectve' in lesson front matter (hint: did you mean" in out
    assert "course.yaml:3: " in out


def test_validate_course_accepts_a_good_course_without_any_database(capsys: pytest.CaptureFixture[str]) -> None:
    # No django_db mark: pytest-django raises on any database access, so this passing proves there was none.
    call_command("validate_course", str(GOOD))

    assert "fixture-course: OK, 2 units, 3 lessons, 1 labs, no problems" in capsys.readouterr().out


def test_validate_course_exits_with_status_1_from_the_shell(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SHIPSHAPE_DEV": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'never-created.sqlite3'}"}
    manage = Path(settings.BASE_DIR) / "manage.py"
    done = subprocess.run(
        [sys.executable, str(manage), "validate_course", str(FIXTURES / "broken-many")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )

    assert done.returncode == 1
    assert "unit-a/01-first.md:3:" in done.stdout
    assert not (tmp_path / "never-created.sqlite3").exists()  # no migrations, no database: still works
