"""Fault tests with the real worker, Redis and Docker: a killed worker, a restarted Redis, an unreachable Docker."""

from datetime import timedelta

import pytest
from django.utils import timezone

from labs.grading.state import revisions_sweep, runs_live
from labs.models import CheckResult, GradingRun, Revision
from labs.sandbox.reaper import containers_reap
from labs.tasks import revision_send
from tests.labs.conftest import HELLO_LAB_DIR, own_containers, wait_for_state

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
GOOD = HELLO_LAB_DIR / "examples" / "good"
DONE = {"graded", "failed", "error"}
SLOW_CHECKS = [
    {"id": "slow", "kind": "command", "points": 1, "args": {"argv": ["sleep", "4"], "timeout_s": 20}},
    {"id": "files", "kind": "files.required", "points": 1, "args": {"paths": ["greet.py"]}},
]


@pytest.fixture
def worker(celery_worker):
    """The session's worker, restored to a healthy state whatever the test did to it."""
    yield celery_worker
    if celery_worker.process is None or celery_worker.process.poll() is not None:
        celery_worker.start()


def _wait_for_check(revision, position: int, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if GradingRun.objects.filter(revision=revision, phase="checks", check_position=position).exists():
            return
        time.sleep(0.1)
    raise AssertionError(f"revision {revision.pk} never started check {position + 1}")


def _later(seconds: int = 3600):
    return timezone.now() + timedelta(seconds=seconds)


def test_a_worker_killed_mid_grading_loses_nothing_and_grades_once(worker, lab_factory, submit, docker_client):
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": SLOW_CHECKS})
    revision = submit(lab, GOOD)
    _wait_for_check(revision, 0)  # "slow"

    worker.kill()  # SIGKILL to the main process and its pool child, mid-check
    revision.refresh_from_db()
    assert revision.state == "running"
    worker.start()
    # The sweeper finds it running past its deadline (simulated by sweeping "later") and sends it again.
    assert revisions_sweep(send=revision_send, now=_later())["requeued"] == 1
    wait_for_state(revision, DONE)

    assert revision.state == "graded" and revision.score == 2
    runs = list(revision.runs.order_by("attempt"))
    assert [r.outcome for r in runs] == ["abandoned", "graded"]
    assert CheckResult.objects.filter(run=runs[1]).count() == 2
    assert revision.error_count == 1
    containers_reap(live_runs=runs_live)  # the killed worker's container belongs to an abandoned run
    assert own_containers(docker_client) == []


def test_a_worker_restarted_under_its_name_takes_back_what_it_was_grading_at_once(worker, lab_factory, submit):
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": SLOW_CHECKS})
    revision = submit(lab, GOOD)
    _wait_for_check(revision, 0)

    worker.kill()
    worker.start(same_name=True)  # as systemd or a container's restart policy brings it back
    # No sweep: the worker's start requeued the revision its previous process held (else it would wait for the
    # sweeper's deadline, the lab's wall time and a margin, holding the learner's next submissions back too).
    wait_for_state(revision, DONE)

    assert revision.state == "graded" and revision.score == 2
    assert [r.outcome for r in revision.runs.order_by("attempt")] == ["abandoned", "graded"]
    assert revision.error_count == 1


def test_revisions_queued_across_a_redis_restart_are_all_graded(worker, redis_server, lab_factory, submit):
    lab = lab_factory(HELLO_LAB_DIR)
    worker.stop()
    revisions = [submit(lab, GOOD) for _ in range(3)]

    redis_server.restart()  # append-only file with fsync always: the queued messages survive
    worker.start()

    for revision in revisions:
        wait_for_state(revision, DONE)
        assert revision.state == "graded" and revision.runs.count() == 1


def test_an_unreachable_docker_is_our_error_retried_then_graded(worker, lab_factory, submit, docker_client):
    lab = lab_factory(HELLO_LAB_DIR)
    worker.stop()
    # "Docker down" without stopping the machine's real engine (other work shares it): the worker is pointed
    # at a socket that does not exist, which the Docker SDK reports exactly like a stopped engine.
    worker.start(DOCKER_HOST="unix:///nonexistent/docker.sock")
    revision = submit(lab, GOOD)
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not GradingRun.objects.filter(revision=revision, outcome="error").exists():
        time.sleep(0.2)
    revision.refresh_from_db()
    assert revision.state in {"queued", "error"}  # never "failed": it was not the learner's fault
    assert revision.error_count >= 1
    error_run = GradingRun.objects.filter(revision=revision, outcome="error").first()
    assert "not reachable" in error_run.error_detail

    worker.stop()
    worker.start()  # the engine is "back"
    revisions_sweep(send=revision_send, now=_later())
    wait_for_state(revision, DONE)

    assert revision.state == "graded" and revision.score == 10
    assert revision.runs.filter(outcome="graded").count() == 1
    assert not Revision.objects.filter(pk=revision.pk, failure_reason__gt="").exists()
