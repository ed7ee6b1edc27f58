"""The orchestrator in-process (no queue): verdicts, scores, stored results and trust boundaries."""

import pytest

from labs.checks.base import CHECK_KINDS, Check, CheckOutcome, register
from labs.grading.orchestrator import grade_revision
from labs.models import CheckResult, Revision
from tests.labs.conftest import FIXTURES, HELLO_LAB_DIR, own_containers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]
HELLO = HELLO_LAB_DIR / "examples"


def test_good_submission_gets_full_points_with_phase_timestamps(lab_factory, submit, runner_image, docker_client):
    lab = lab_factory(HELLO_LAB_DIR)
    revision = submit(lab, HELLO / "good", enqueue=False)

    assert grade_revision(revision_id=revision.pk, worker="test") == "graded"

    revision.refresh_from_db()
    assert (revision.state, revision.score, revision.max_score) == ("graded", 10, 10)
    assert revision.scores_by_category == {
        "reproducibility": {"score": 2.0, "max": 2.0},
        "correctness": {"score": 8.0, "max": 8.0},
    }
    run = revision.runs.get()
    assert run.image_digest == runner_image
    assert run.started_at <= run.sandbox_ready_at <= run.checks_finished_at <= run.results_stored_at
    assert run.outcome == "graded" and run.phase == "results_stored"
    assert run.resources["peak_memory_bytes"] > 0
    assert [r.status for r in run.check_results.order_by("position")] == ["pass", "pass", "pass"]
    assert own_containers(docker_client) == []


def test_broken_output_fails_the_command_and_the_hidden_tests(lab_factory, submit):
    lab = lab_factory(HELLO_LAB_DIR)
    revision = submit(lab, HELLO / "broken-output", enqueue=False)

    assert grade_revision(revision_id=revision.pk) == "graded"

    results = {r.check_id: r for r in CheckResult.objects.filter(run__revision=revision)}
    assert results["files"].status == "pass"
    assert results["greets-ada"].status == "fail"
    assert "Hello, Ada!" in results["greets-ada"].message
    assert results["greets-ada"].evidence["stdout"].strip() == "Hi Ada"
    assert results["hidden-tests"].status == "fail"
    assert results["hidden-tests"].hidden_until_due is True
    # 1 of 4 hidden tests (the lock) passes: proportional points.
    assert float(results["hidden-tests"].points) == 1.25
    revision.refresh_from_db()
    assert float(revision.score) == 2 + 1.25


def test_unpinned_lock_fails_only_the_lock_test(lab_factory, submit):
    lab = lab_factory(HELLO_LAB_DIR)
    revision = submit(lab, HELLO / "broken-unpinned", enqueue=False)

    grade_revision(revision_id=revision.pk)

    hidden = CheckResult.objects.get(run__revision=revision, check_id="hidden-tests")
    assert hidden.status == "fail"
    assert "test_every_requirement_is_pinned" in hidden.message
    assert "3 of 4" in hidden.message


def test_missing_file_is_named_in_the_message(lab_factory, submit):
    lab = lab_factory(HELLO_LAB_DIR)
    revision = submit(lab, FIXTURES / "hello-pinned" / "broken-missing-lock", enqueue=False)

    grade_revision(revision_id=revision.pk)

    files = CheckResult.objects.get(run__revision=revision, check_id="files")
    assert files.status == "fail"
    assert files.evidence["missing"] == ["requirements.lock"]


def test_a_revision_is_graded_once_when_delivered_twice(lab_factory, submit):
    lab = lab_factory(HELLO_LAB_DIR)
    revision = submit(lab, HELLO / "good", enqueue=False)

    assert grade_revision(revision_id=revision.pk) == "graded"
    assert grade_revision(revision_id=revision.pk) is None

    assert revision.runs.count() == 1
    assert CheckResult.objects.filter(run__revision=revision).count() == 3


class _Crashing(Check):
    kind = "tests.crashing"

    def run(self, ctx):
        raise RuntimeError("a bug in a check")


if "tests.crashing" not in CHECK_KINDS:
    register(_Crashing)


def test_a_crashing_or_misconfigured_check_makes_the_run_our_error_never_the_learners(lab_factory, submit):
    from labs.sandbox import PlatformError

    spec_checks = [
        {"id": "crash", "kind": "tests.crashing", "points": 1, "args": {}},
        {"id": "bad", "kind": "command", "points": 1, "args": {"argv": "not-a-list"}},
        {"id": "files", "kind": "files.required", "points": 1, "args": {"paths": ["greet.py"]}},
    ]
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": spec_checks})
    revision = submit(lab, HELLO / "good", enqueue=False)

    with pytest.raises(PlatformError, match="crash, bad"):
        grade_revision(revision_id=revision.pk)

    statuses = dict(CheckResult.objects.filter(run__revision=revision).values_list("check_id", "status"))
    assert statuses == {"crash": "error", "bad": "error", "files": "pass"}
    crash = CheckResult.objects.get(run__revision=revision, check_id="crash")
    assert "a bug in a check" not in crash.message  # details are logged for staff, not shown
    revision.refresh_from_db()
    assert revision.state == Revision.State.QUEUED  # retried, not graded with a partial maximum
    assert revision.error_count == 1
    assert revision.score is None


class _Undecided(Check):
    kind = "tests.undecided"

    def run(self, ctx):
        return CheckOutcome("error", "The service never started listening on $PORT.")


if "tests.undecided" not in CHECK_KINDS:
    register(_Undecided)


def test_an_undecided_check_is_ours_never_scored_and_retried_until_it_needs_attention(lab_factory, submit):
    from labs.grading.state import MAX_ERRORS
    from labs.sandbox import PlatformError

    spec_checks = [
        {"id": "service", "kind": "tests.undecided", "points": 9, "args": {}},
        {"id": "files", "kind": "files.required", "points": 1, "args": {"paths": ["greet.py"]}},
    ]
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": spec_checks})
    revision = submit(lab, HELLO / "good", enqueue=False)

    for attempt in range(1, MAX_ERRORS):
        with pytest.raises(PlatformError, match="service"):
            grade_revision(revision_id=revision.pk)
        revision.refresh_from_db()
        assert (revision.state, revision.error_count, revision.score) == ("queued", attempt, None)
    assert grade_revision(revision_id=revision.pk) == "error"  # parked for staff: "needs attention"

    revision.refresh_from_db()
    assert revision.get_state_display() == "Needs attention"
    assert revision.score is None and revision.max_score is None
    assert "never started listening" in revision.runs.order_by("-attempt").first().error_detail


def test_missing_runner_image_is_our_error_not_the_learners(lab_factory, submit, settings):
    from labs.sandbox import PlatformError

    settings.RUNNER_IMAGE = "shipshape-runner:does-not-exist"
    lab = lab_factory(HELLO_LAB_DIR)
    revision = submit(lab, HELLO / "good", enqueue=False)

    with pytest.raises(PlatformError):
        grade_revision(revision_id=revision.pk)

    revision.refresh_from_db()
    assert revision.state == Revision.State.QUEUED
    assert revision.error_count == 1
    run = revision.runs.get()
    assert run.outcome == "error" and "does-not-exist" in run.error_detail


def test_a_lab_yaml_that_omits_every_optional_field_grades_with_the_documented_defaults(lab_factory, submit, tmp_path):
    lab_dir = tmp_path / "minimal"
    (lab_dir / "grader").mkdir(parents=True)
    (lab_dir / "grader" / "README").write_text("no hidden files needed\n")
    (lab_dir / "lab.yaml").write_text(
        "title: Minimal\n"
        "checks:\n"
        "  - {id: has-greet, kind: files.required, args: {paths: [greet.py]}}\n"
        "  - {id: runs, kind: command, args: {argv: [python, greet.py, Ada], stdout_contains: 'Hello, Ada!'}}\n"
    )
    lab = lab_factory(lab_dir)
    revision = submit(lab, HELLO / "good", enqueue=False)

    assert grade_revision(revision_id=revision.pk) == "graded"

    revision.refresh_from_db()
    assert (revision.score, revision.max_score) == (2, 2)  # points default to 1 each
    assert revision.scores_by_category == {"correctness": {"score": 2.0, "max": 2.0}}
    limits = revision.runs.get().resources["limits"]
    documented = {"cpus": 1.0, "memory_mb": 256, "wall_seconds": 120, "pids": 128, "output_bytes": 1048576}
    assert {key: limits[key] for key in documented} == documented
    assert limits["scratch_mb"] == 64
