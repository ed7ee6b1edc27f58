"""A second host: a worker that shares only PostgreSQL and Redis with the web host grades a revision end to end.

The worker runs on this machine but as another host would: its own data directory, its own Docker engine
(bin/dockerd-private.sh: own socket, data-root, exec-root and pidfile, no bridge, no iptables, the runner image
copied in), and, in a mount namespace of its own, neither the web host's data directory nor the main engine's
socket. Whatever it needs of the submission and the grader it can only have read from the database.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import docker
import pytest
import redis
from django.conf import settings as django_settings
from django.db import transaction
from django.test import Client
from django.utils import timezone

from courses.models import Enrollment
from courses.services.importing import course_import
from labs.models import CheckResult, Lab, LabWork, Revision
from labs.reviews import loop
from labs.sandbox.reaper import database_label
from labs.services.submissions import revision_submit
from tests.labs.conftest import HELLO_LAB_DIR, REPO_ROOT, CeleryWorker, managed_containers, wait_for_state
from tests.labs.factories import DEFAULT_SPEC, enroll, make_course, make_lab, make_user

SAMPLE_COURSE = REPO_ROOT / "courses" / "content" / "production-systems"
DOCKERD_PRIVATE = REPO_ROOT / "bin" / "dockerd-private.sh"
ENGINE_NAME = "second-host"
# Redis databases no worker of the main fixtures reads (they use /0; test_readyz uses /7): only the worker a test
# here starts takes its tasks, and /readyz sees its heartbeat alone.
SECOND_HOST_REDIS_DB = 8
FIXTURE_CHECK_REDIS_DB = 9
ON_SQLITE = django_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"

# Hides each path given before `--` (a directory under an empty tmpfs, a file such as a socket under /dev/null),
# in the mount namespace `unshare` made, then runs the command after `--`.
HIDE_THEN_EXEC = """
while [ "$1" != -- ]; do
  if [ -d "$1" ]; then mount -t tmpfs -o size=1m,mode=0700 tmpfs "$1"; else mount --bind /dev/null "$1"; fi
  shift
done
shift
exec "$@"
"""


@dataclass
class PrivateEngine:
    host: str
    client: docker.DockerClient


@dataclass
class SecondHost:
    worker: CeleryWorker
    data_dir: Path
    hidden: list[str]  # the web host's directories and the main engine's socket, as the worker cannot see them


def _broker_point(url: str) -> None:
    """Points this process's Celery app at `url`. Pools are dropped, not closed: kombu keeps one pool per broker
    URL, and pointing back must find the session broker's pool open."""
    from config.celery import app

    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


def _redis_db_use(*, base_url: str, db: int, settings) -> Iterator[str]:
    """Points this process's Redis and Celery broker at database `db` of the session's Redis, emptied."""
    from config.celery import app

    url = base_url.rsplit("/", 1)[0] + f"/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    settings.REDIS_URL = settings.CELERY_BROKER_URL = url
    previous = app.conf.broker_url
    _broker_point(url)
    try:
        yield url
    finally:
        _broker_point(previous)
        client.flushdb()
        client.close()


@pytest.fixture(scope="module")
def second_engine(runner_image) -> Iterator[PrivateEngine]:
    """The second host's Docker engine, with the runner image copied in; stopped when the module is done."""
    if os.geteuid() != 0:
        pytest.fail("the second host's Docker engine and mount namespace need root; run ./bin/test as root")
    started = subprocess.run(
        [str(DOCKERD_PRIVATE), "start", ENGINE_NAME, django_settings.RUNNER_IMAGE],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    if started.returncode != 0:
        pytest.fail(f"bin/dockerd-private.sh start {ENGINE_NAME} failed:\n{started.stderr[-3000:]}")
    host = started.stdout.strip().splitlines()[-1]
    client = docker.DockerClient(base_url=host)
    try:
        yield PrivateEngine(host=host, client=client)
    finally:
        client.close()
        subprocess.run([str(DOCKERD_PRIVATE), "stop", ENGINE_NAME], check=True, cwd=REPO_ROOT)


@pytest.fixture
def second_host_redis(redis_server, settings) -> Iterator[str]:
    yield from _redis_db_use(base_url=redis_server.url, db=SECOND_HOST_REDIS_DB, settings=settings)


@pytest.fixture
def second_host(second_host_redis, second_engine, grading_db_path, tmp_path, settings) -> Iterator[SecondHost]:
    """A worker with its own data directory and engine, unable to see the web host's data directory or the main
    engine's socket. Only the database (PostgreSQL) and Redis are shared."""
    web_dirs = [Path(settings.DATA_DIR)]
    if not Path(settings.SUBMISSIONS_ROOT).is_relative_to(settings.DATA_DIR):
        web_dirs.append(Path(settings.SUBMISSIONS_ROOT))
    data_dir = tmp_path / "second-host-data"
    data_dir.mkdir()
    assert not any(data_dir.is_relative_to(web_dir) for web_dir in web_dirs)  # it would be hidden too
    main_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    sockets = {Path(main_host.removeprefix("unix://")).resolve(), Path("/var/run/docker.sock").resolve()}
    hidden = [str(path) for path in [*web_dirs, *sorted(sockets)] if path.exists()]
    worker = CeleryWorker(
        redis_url=second_host_redis,
        db_path=grading_db_path,
        log_dir=tmp_path,
        name=ENGINE_NAME,
        wrapper=["unshare", "--mount", "--propagation", "private", "sh", "-ec", HIDE_THEN_EXEC, "sh", *hidden, "--"],
    )
    worker.start(
        DOCKER_HOST=second_engine.host,
        SHIPSHAPE_DATA_DIR=str(data_dir),
        SHIPSHAPE_SUBMISSIONS_ROOT=str(data_dir / "submissions"),
        SHIPSHAPE_HEARTBEAT_SECONDS="1",
    )
    try:
        yield SecondHost(worker=worker, data_dir=data_dir, hidden=hidden)
    finally:
        worker.stop()


def _files_of(folder: Path) -> list[tuple[str, bytes]]:
    return [(p.relative_to(folder).as_posix(), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]


def _mount_types(pid: int) -> dict[str, str]:
    """Mount point -> filesystem type, as process `pid` sees them (proc(5), mountinfo)."""
    mounts = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        mounts[before.split()[4]] = after.split()[0]
    return mounts


def _created_containers(client: docker.DockerClient, *, since: float) -> list[dict[str, str]]:
    """The labels of every sandbox container the engine created since `since` (removed ones included)."""
    events = client.events(
        since=int(since),
        until=int(time.time()) + 1,
        filters={"type": "container", "event": "create", "label": "shipshape.managed=1"},
        decode=True,
    )
    return [event["Actor"]["Attributes"] for event in events]


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.second_host
@pytest.mark.skipif(ON_SQLITE, reason="a second host shares the database over the network: PostgreSQL only")
@pytest.mark.django_db(transaction=True)
def test_it_grades_a_revision_on_a_second_host_that_shares_only_postgresql_and_redis(
    second_host, second_engine, docker_client
):
    since = time.time() - 1
    # The worker's own mount table: the web host's data directory under an empty tmpfs, the main engine's socket
    # under /dev/null.
    mounts = _mount_types(second_host.worker.process.pid)
    assert mounts.get(str(django_settings.DATA_DIR)) == "tmpfs", mounts
    assert all(path in mounts for path in second_host.hidden), (second_host.hidden, mounts)
    course_import(path=SAMPLE_COURSE)
    lab = Lab.objects.get(course__slug="production-systems", slug="hello-pinned")
    examples = lab.labspec.examples
    assert examples, "hello-pinned's lab.yaml declares its examples"

    # One learner per example: one grading in flight per learner would otherwise serialise them.
    submitted = {
        example.folder: revision_submit(lab=lab, user=make_user(), upload=_files_of(HELLO_LAB_DIR / example.folder))
        for example in examples
    }

    for example in examples:
        revision = wait_for_state(submitted[example.folder], {"graded", "failed", "error"}, timeout=600)
        statuses = dict(CheckResult.objects.filter(run__revision=revision).values_list("check_id", "status"))
        expected = {check.id: "fail" if check.id in example.expect_fail else "pass" for check in lab.labspec.checks}
        assert (example.folder, revision.state, statuses) == (
            example.folder,
            "graded",
            expected,
        ), second_host.worker.log()[-3000:]
    runs = [revision.runs.get() for revision in submitted.values()]
    assert all(run.worker.startswith(f"{ENGINE_NAME}-") for run in runs), [run.worker for run in runs]

    # The sandboxes ran on the second host's engine, and the main engine never saw them.
    run_ids = {str(run.pk) for run in runs}
    label = database_label()
    on_second = {c["shipshape.run"] for c in _created_containers(second_engine.client, since=since)}
    on_main = {
        c["shipshape.run"]
        for c in _created_containers(docker_client, since=since)
        if c.get("shipshape.db") == label and c.get("shipshape.run") in run_ids
    }
    assert run_ids <= on_second, (run_ids, on_second)
    assert on_main == set()
    assert managed_containers(second_engine.client) == []  # no container left behind on the second host

    # What it graded it materialized from the database into its own data directory.
    assert (second_host.data_dir / "graders" / lab.grader_digest).is_dir()
    for revision in submitted.values():
        assert (second_host.data_dir / "submissions" / revision.tree_sha256 / "files").is_dir()

    # The web host learns of the worker's engine and runner image from its heartbeat, through /readyz.
    expected_image = second_engine.client.images.get(django_settings.RUNNER_IMAGE).id
    for _ in range(100):  # a beat a second; bounded, not a threshold
        workers = Client().get("/readyz").json()["dependencies"]["workers"]
        if workers["status"] == "up":
            break
        time.sleep(0.2)
    assert workers["status"] == "up", workers
    (beat,) = workers["workers"]
    assert beat["worker"].startswith(f"{ENGINE_NAME}-")
    assert (beat["docker"]["status"], beat["image"]["present"], beat["image"]["id"]) == ("up", True, expected_image)
    assert beat["docker"]["engine_id"] == second_engine.client.info()["ID"] != docker_client.info()["ID"]


@pytest.fixture
def fixture_check_redis(redis_server, settings) -> Iterator[str]:
    yield from _redis_db_use(base_url=redis_server.url, db=FIXTURE_CHECK_REDIS_DB, settings=settings)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_it_gives_a_worker_the_sessions_test_database(fixture_check_redis, grading_db_path, tmp_path):
    # No Docker: the worker expires a review claim, which it can only do in the database this test wrote to
    # (on SQLite the session's file, on PostgreSQL Django's test_… database).
    course = make_course()
    learner, reviewer = make_user(), make_user()
    enroll(learner, course)
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    rubric = [{"id": "clarity", "title": "Clear code", "points": 10}]
    lab = make_lab(course=course, spec={**DEFAULT_SPEC, "review": {"rubric": rubric}})
    with transaction.atomic():  # as revision_submit and the orchestrator call them: the loop locks the work
        revision = Revision.objects.create(lab=lab, user=learner, number=1, tree_sha256="a" * 64, files=[])
        loop.work_revision_submitted(revision=revision)
        Revision.objects.filter(pk=revision.pk).update(state="graded", score=Decimal(15), max_score=Decimal(15))
        revision.refresh_from_db()
        work = loop.work_revision_graded(revision=revision)
        loop.work_claim(work=work, reviewer=reviewer, now=timezone.now() - timedelta(hours=2))
    worker = CeleryWorker(redis_url=fixture_check_redis, db_path=grading_db_path, log_dir=tmp_path)
    worker.start()
    try:
        from labs.tasks import work_claims_expire

        work_claims_expire.delay()
        for _ in range(600):  # bounded wait for the worker, not a threshold
            work.refresh_from_db()
            if work.state == LabWork.State.AWAITING_REVIEW:
                break
            time.sleep(0.1)
    finally:
        worker.stop()
    assert (work.state, work.claimed_by) == (LabWork.State.AWAITING_REVIEW, None), worker.log()[-3000:]
