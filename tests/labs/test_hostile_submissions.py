"""Hostile submissions graded by the real worker: each gets the verdict a learner should see, the worker keeps
grading (a good submission queued right behind it is graded), and no sandbox container is left behind.

Every test runs twice: with sandboxes started when a grading needs them, and with the worker's warm pool
(labs/sandbox/pool.py), so pooled sandboxes hold against the same submissions."""

import time

import pytest

from labs.models import CheckResult
from labs.sandbox.pool import POOL_LABEL
from tests.labs.conftest import FIXTURES, WORKER_SECRET, own_containers, wait_for_state

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
HOSTILE = FIXTURES / "hostile"
POOL_SIZE = 2


@pytest.fixture(scope="module", params=["fresh", "pooled"])
def sandboxes(request, celery_worker):
    """How the worker gets its sandboxes; "pooled" restarts it with a warm pool of POOL_SIZE."""
    if request.param == "fresh":
        yield request.param
        return
    celery_worker.stop()
    celery_worker.start(SHIPSHAPE_SANDBOX_POOL_SIZE=str(POOL_SIZE))
    try:
        yield request.param
    finally:
        celery_worker.stop()
        celery_worker.start()


def left_behind(docker_client, sandboxes: str) -> list:
    """This session's sandbox containers still there. A warm pool keeps up to POOL_SIZE idle ones: more is a leak."""
    containers = own_containers(docker_client)
    if sandboxes == "fresh":
        return containers
    pooled = [c for c in containers if POOL_LABEL in c.labels]
    deadline = time.monotonic() + 60
    while len(pooled) > POOL_SIZE and time.monotonic() < deadline:  # the pool is replacing a dropped entry
        time.sleep(0.5)
        pooled = [c for c in own_containers(docker_client) if POOL_LABEL in c.labels]
    return [c for c in containers if POOL_LABEL not in c.labels] + pooled[POOL_SIZE:]


def pool_warm_for(lab, submit, docker_client) -> None:
    """The worker's pool holds a container with the lab's limits: the first grading of a lab teaches the pool its
    limits (it starts with the labs' defaults), so one good submission goes first when none is there yet."""
    memory = lab.labspec.limits.sandbox_limits().memory_mb * 1024 * 1024

    def warm() -> bool:
        for container in own_containers(docker_client):
            if POOL_LABEL in container.labels and container.attrs["HostConfig"]["Memory"] == memory:
                return True
        return False

    if not warm():
        wait_for_state(submit(lab, HOSTILE / "submissions" / "good"), {"graded", "failed", "error"})
    deadline = time.monotonic() + 120
    while not warm():
        assert time.monotonic() < deadline, "the worker's pool never held a container with the lab's limits"
        time.sleep(0.2)


@pytest.fixture
def grade(sandboxes, celery_worker, lab_factory, submit, docker_client):
    """Submits a hostile case and a good one right after it; returns the hostile verdict and its results."""

    def run(case: str):
        lab = lab_factory(HOSTILE)
        if sandboxes == "pooled":
            pool_warm_for(lab, submit, docker_client)
        hostile = submit(lab, HOSTILE / "submissions" / case)
        good = submit(lab, HOSTILE / "submissions" / "good")
        wait_for_state(hostile, {"graded", "failed", "error"})
        wait_for_state(good, {"graded", "failed", "error"})
        assert (good.state, good.score) == ("graded", 2), "the worker must keep grading after a hostile submission"
        assert left_behind(docker_client, sandboxes) == []
        if sandboxes == "pooled":
            log = celery_worker.log()
            assert f"taken from the pool (revision {hostile.pk}," in log, log[-3000:]
        results = {r.check_id: r for r in CheckResult.objects.filter(run__revision=hostile)}
        return hostile, results

    return run


@pytest.mark.parametrize(
    ("case", "reasons"),
    [
        ("fork-bomb", {"timeout", "oom"}),
        ("memory-bomb", {"oom"}),
        ("busy-loop", {"timeout"}),
        ("sleeper", {"timeout"}),
    ],
)
def test_a_submission_hitting_a_limit_fails_with_the_limit_named(grade, case, reasons):
    revision, results = grade(case)

    assert revision.state == "failed"
    assert revision.failure_reason in reasons
    if revision.failure_reason == "oom":
        assert "96 MB" in revision.failure_message
    else:
        assert "timed out after 5 s" in revision.failure_message
    assert results["run"].status == "fail"
    assert results["tests"].status == "fail"  # answer() is wrong; the sandbox still ran the tests


def limits_hit(revision) -> set[str]:
    return {hit["reason"] for hit in revision.runs.get().resources.get("limits_hit", [])}


def test_filling_scratch_disk_and_inodes_only_fails_the_submission(grade):
    revision, results = grade("fill-disk")

    assert revision.state == "graded"
    assert limits_hit(revision) == {"disk"}  # noted on the run, named on the page, not a failed revision
    assert results["run"].status == "fail"
    assert "exited with code 3" in results["run"].message
    assert "errors [28, 28]" in results["run"].evidence["stdout"]  # ENOSPC for bytes, then for inodes


def test_a_100_mb_stdout_flood_is_cut_at_the_output_cap(grade):
    revision, results = grade("stdout-flood")

    assert revision.state == "graded"
    run = results["run"]
    assert run.status == "fail"  # "done" came after the cap
    assert limits_hit(revision) == {"output_limit"}
    assert "cut at 65536 bytes" in run.evidence["note"]
    assert len(run.evidence["stdout"]) < 5000
    assert len(revision.runs.get().log) <= 70_000


@pytest.mark.parametrize(
    ("case", "reason", "page_text"),
    [
        ("segfault", "crash", "A program crashed (SIGSEGV)."),
        ("many-processes", "pids", "more processes than the limit of 32"),
    ],
)
def test_a_crash_or_the_process_limit_is_named_and_fails_only_the_check(grade, client, case, reason, page_text):
    revision, results = grade(case)

    assert revision.state == "graded"
    assert results["run"].status == "fail"
    assert reason in limits_hit(revision)
    client.force_login(revision.user)
    assert page_text in client.get(f"/revisions/{revision.pk}/").content.decode()


def test_nul_bytes_invalid_utf8_and_terminal_escapes_are_shown_as_plain_text(grade):
    revision, results = grade("weird-output")

    run = results["run"]
    assert run.status == "pass"
    stdout = run.evidence["stdout"]
    assert "\x00" not in stdout and "\x1b" not in stdout and "\x07" not in stdout
    assert "\ufffd" in stdout  # invalid UTF-8 replaced, not dropped silently
    assert "red" in stdout


def test_the_network_has_only_loopback_and_connections_fail(grade):
    revision, results = grade("network")

    stdout = results["run"].evidence["stdout"]
    assert "interfaces=lo\n" in stdout
    assert "connect=ConnectionRefusedError" in stdout


def test_the_workers_environment_never_reaches_the_sandbox(grade):
    revision, results = grade("read-env")

    assert results["run"].status == "pass"
    stdout = results["run"].evidence["stdout"]
    assert "PATH=" in stdout  # the program did print its environment
    assert WORKER_SECRET not in stdout
    assert "DATABASE_URL" not in stdout and "REDIS_URL" not in stdout


def test_writing_outside_scratch_fails_everywhere(grade):
    revision, results = grade("write-outside")

    assert "wrote=[]" in results["run"].evidence["stdout"]


def test_a_daemonised_child_neither_holds_the_check_nor_outlives_it(grade):
    revision, results = grade("daemon")

    assert revision.state == "graded"
    assert results["run"].status == "pass"
    assert results["run"].evidence["duration_s"] < 5  # returned before the command's 5 s timeout


def test_printing_or_writing_a_fake_passing_report_earns_nothing(grade):
    revision, results = grade("fake-pass")

    tests = results["tests"]
    assert tests.status == "fail"
    assert float(tests.points) == 0
    assert "0 of 1" in tests.message


def test_nothing_a_submission_takes_during_a_hidden_check_reaches_a_later_visible_one(
    sandboxes, celery_worker, lab_factory, submit, docker_client
):
    lab = lab_factory(FIXTURES / "hidden-carry")
    revision = wait_for_state(submit(lab, FIXTURES / "hidden-carry" / "submission"), {"graded", "failed", "error"})

    results = {r.check_id: r for r in CheckResult.objects.filter(run__revision=revision)}
    assert revision.state == "graded"
    assert results["secret-tests"].status == "pass"  # the hidden tests ran, and the copy happened in their sandbox
    shown = results["show"].evidence["stdout"]
    assert "HIDDEN_TEST_MARKER" not in shown and "/work/leak.txt FileNotFoundError" in shown
    run = revision.runs.get()
    assert "HIDDEN_TEST_MARKER" not in run.log and "secret-tests" not in run.log
    assert "secret-tests" in run.hidden_log
    assert left_behind(docker_client, sandboxes) == []
