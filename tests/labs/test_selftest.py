"""Lab examples (lab.yaml `examples:`) and `manage.py lab_selftest`: validation, storage apart from what learners
get, judging expected against actual and flips, and the real command through the queue and workers."""

from __future__ import annotations

import shutil
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from courses.coursefs import load_course
from courses.services.importing import course_import
from labs import bundles
from labs.models import CheckResult, GradingRun, Lab, LabSelfTest, Revision
from labs.permissions import is_reviewable
from labs.reviews.selectors import review_queue
from labs.services.selftest import SELFTEST_USERNAME, selftest_judge, selftest_start
from tests.courses.test_coursefs import GOOD, register_test_kinds, write
from tests.labs.conftest import REPO_ROOT
from tests.labs.factories import enroll, make_user

register_test_kinds()
LAB = "unit-two/hello-lab/lab.yaml"
SAMPLE_COURSE = REPO_ROOT / "courses" / "content" / "production-systems"
EXAMPLES = "examples:\n  - folder: examples/right\n    expect: all-pass\n  - folder: examples/wrong\n    expect: {fail: [says-hello]}\n"


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    target = tmp_path / "course"
    shutil.copytree(GOOD, target)
    lab = target / "unit-two" / "hello-lab"
    (lab / "lab.yaml").write_text((lab / "lab.yaml").read_text() + EXAMPLES)
    for name in ("right", "wrong"):
        write(lab, f"examples/{name}/main.py", f"print({name!r})\n")
    return target


def problems(course_dir: Path) -> list[str]:
    return [p.format() for p in load_course(course_dir).problems]


def test_a_lab_with_valid_examples_validates(course_dir):
    assert problems(course_dir) == []


def test_it_reports_an_example_that_names_an_unknown_check(course_dir):
    yaml = course_dir / LAB
    yaml.write_text(yaml.read_text().replace("fail: [says-hello]", "fail: [says-helo]"))

    assert any(
        "expects unknown or no checks to fail: says-helo" in p and "says-hello" in p for p in problems(course_dir)
    )


def test_it_reports_a_missing_example_folder_at_its_line(course_dir):
    shutil.rmtree(course_dir / "unit-two" / "hello-lab" / "examples" / "wrong")

    found = [p for p in problems(course_dir) if "examples/wrong/ is missing or empty" in p]
    assert found and found[0].startswith(f"{LAB}:")


def test_it_refuses_an_example_inside_starter_or_grader(course_dir):
    yaml = course_dir / LAB
    yaml.write_text(yaml.read_text().replace("folder: examples/right", "folder: starter"))

    assert any("must be a folder inside the lab, outside starter/ and grader/" in p for p in problems(course_dir))


def test_it_refuses_an_example_the_labs_upload_rules_would_reject(course_dir):
    write(course_dir / "unit-two" / "hello-lab", "examples/right/notes.txt", "not allowed\n")

    found = [p for p in problems(course_dir) if "example examples/right is not a submission this lab accepts" in p]
    assert found and "notes.txt" in found[0]


def test_it_refuses_an_expectation_that_is_not_all_pass_or_a_fail_list(course_dir):
    yaml = course_dir / LAB
    yaml.write_text(yaml.read_text().replace("expect: all-pass", "expect: pass"))

    assert any("write `expect: all-pass`" in p for p in problems(course_dir))


@pytest.mark.django_db
def test_examples_are_stored_as_submissions_and_never_reach_learners(course_dir, settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"

    course_import(path=course_dir)

    lab = Lab.objects.get(slug="hello-lab")
    stored = [example.tree_sha256 for example in lab.labspec.examples]
    assert len(stored) == 2 and all(len(digest) == 64 for digest in stored)
    grader = bundles.grader_dir(digest=lab.grader_digest)
    assert sorted(p.relative_to(grader).as_posix() for p in grader.rglob("*") if p.is_file()) == ["test_hidden.py"]
    with zipfile.ZipFile(bundles.starter_path(digest=lab.starter_digest)) as starter:
        assert not any("examples" in name for name in starter.namelist())


def _selftest_lab(settings, tmp_path, course_dir):
    settings.DATA_DIR = tmp_path / "data"
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    course_import(path=course_dir)
    return Lab.objects.get(slug="hello-lab")


def _grade(revision: Revision, statuses: dict[str, str], state: str = "graded") -> None:
    run = GradingRun.objects.create(revision=revision, attempt=1, phase="results_stored", outcome=state)
    for position, (check_id, status) in enumerate(statuses.items()):
        CheckResult.objects.create(
            run=run,
            position=position,
            check_id=check_id,
            kind="test.echo",
            category="correctness",
            status=status,
            points=Decimal(1 if status == "pass" else 0),
            max_points=Decimal(1),
            message="",
        )
    Revision.objects.filter(pk=revision.pk).update(state=state)


@pytest.mark.django_db
def test_it_agrees_when_every_example_gets_what_it_expects(
    settings, tmp_path, course_dir, django_capture_on_commit_callbacks
):
    lab = _selftest_lab(settings, tmp_path, course_dir)
    with django_capture_on_commit_callbacks(execute=False):  # no broker: these revisions are graded by hand below
        selftest = selftest_start(lab=lab, repeat=2)

    for revision in selftest.revisions.all():
        right = revision.example.startswith("examples/right")
        _grade(revision, {"says-hello": "pass" if right else "fail", "hidden-suite": "pass"})

    assert selftest_judge(selftest=selftest).status == LabSelfTest.Status.AGREED
    assert selftest.report["flips"] == []


@pytest.mark.django_db
def test_it_disagrees_on_a_wrong_verdict_and_reports_a_flip_between_repeats(
    settings, tmp_path, course_dir, django_capture_on_commit_callbacks
):
    lab = _selftest_lab(settings, tmp_path, course_dir)
    with django_capture_on_commit_callbacks(execute=False):
        selftest = selftest_start(lab=lab, repeat=2)

    for revision in selftest.revisions.order_by("number"):
        first_round = revision.example.endswith("#1")
        _grade(revision, {"says-hello": "pass" if first_round else "fail", "hidden-suite": "pass"})

    judged = selftest_judge(selftest=selftest)
    assert judged.status == LabSelfTest.Status.DISAGREED
    assert {"example": "examples/right", "check": "says-hello", "statuses": ["fail", "pass"]} in judged.report["flips"]
    problems = {row["example"]: row["problems"] for row in judged.report["examples"]}
    assert "round 2: says-hello expected pass, got fail" in problems["examples/right"]
    assert "round 1: says-hello expected fail, got pass" in problems["examples/wrong"]


@pytest.mark.django_db
def test_self_test_revisions_are_nobodys_work_and_never_reviewed(
    settings, tmp_path, course_dir, django_capture_on_commit_callbacks
):
    lab = _selftest_lab(settings, tmp_path, course_dir)
    with django_capture_on_commit_callbacks(execute=False):
        selftest = selftest_start(lab=lab)
    revision = selftest.revisions.first()
    _grade(revision, {"says-hello": "pass", "hidden-suite": "pass"})
    revision.refresh_from_db()
    reviewer = make_user()
    enroll(reviewer, lab.course, "reviewer")

    assert revision.user.username == SELFTEST_USERNAME and not revision.user.is_active
    assert not revision.user.has_usable_password()
    assert is_reviewable(revision=revision) is False
    assert list(review_queue(reviewer=reviewer)) == []


@pytest.mark.django_db
def test_staff_see_the_last_self_test_on_the_lab_page_and_learners_do_not(
    settings, tmp_path, course_dir, django_capture_on_commit_callbacks
):
    lab = _selftest_lab(settings, tmp_path, course_dir)
    with django_capture_on_commit_callbacks(execute=False):
        selftest = selftest_start(lab=lab)
    selftest_judge(selftest=selftest, timed_out=True)
    staff, learner = make_user(is_staff=True), make_user()
    url = f"/courses/{lab.course.slug}/labs/{lab.slug}/"

    for user, shown in ((staff, True), (learner, False)):
        client = Client()
        client.force_login(user)
        assert ("Last self-test (staff only)" in client.get(url).content.decode()) is shown


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lab_slug", ["hello-pinned", "quote-service", "reproducible-notebook"])
def test_every_sample_labs_examples_get_the_verdicts_they_declare(celery_worker, settings, lab_slug, capsys):
    course_import(path=SAMPLE_COURSE)

    call_command("lab_selftest", f"production-systems/{lab_slug}", "--repeat", "1", "--timeout", "900", "--poll", "0.5")

    out = capsys.readouterr().out
    assert out.rstrip().endswith("agreed"), out
    assert "DISAGREES" not in out
