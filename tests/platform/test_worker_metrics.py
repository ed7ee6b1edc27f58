"""A worker's own metrics endpoint (SHIPSHAPE_WORKER_METRICS_ADDR): a real Celery worker subprocess on a free
127.0.0.1 port, scraped over HTTP and parsed with prometheus-client's own parser."""

from __future__ import annotations

import collections
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.db import transaction
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from labs.models import CheckResult, Revision
from labs.services.grading import revision_enqueue
from tests.conftest import _celery_broker_use, free_port
from tests.labs.conftest import (  # noqa: F401 - the grading fixtures, used by name below
    HELLO_LAB_DIR,
    REPO_ROOT,
    CeleryWorker,
    lab_factory,
    wait_for_state,
)
from tests.labs.factories import make_stored_revision, make_user

TOKEN = "worker-metrics-token-for-tests-0123"
HELLO = HELLO_LAB_DIR / "examples"
# Its own Redis database: a worker another test left running on the session's database never takes these gradings.
REDIS_DB = 9
# A database for every test: on PostgreSQL a worker's DATABASE_URL names the test database, known once it is set up.
pytestmark = pytest.mark.django_db(transaction=True)


def scrape(url: str, *, token: str = "") -> dict[tuple[str, tuple], float]:
    """Every sample of the worker's /metrics as {(name, sorted labels): value}."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def status_of(url: str, **headers: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def worker_redis_url(redis_server, settings) -> Iterator[str]:
    """The session's Redis, database REDIS_DB, emptied; this process publishes there while the test runs."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    settings.REDIS_URL = settings.CELERY_BROKER_URL = url
    previous = _celery_broker_use(url)
    try:
        yield url
    finally:
        _celery_broker_use(previous)
        client.flushdb()
        client.close()


@pytest.fixture
def metrics_worker(worker_redis_url, grading_db_path, tmp_path) -> Iterator[Callable[..., str]]:
    """Starts a worker with its own empty multiprocess directory and a metrics address; returns the scrape URL."""
    workers: list[CeleryWorker] = []

    def start(**env: str) -> str:
        port = free_port()
        multiproc_dir = tmp_path / f"metrics-{len(workers)}"
        multiproc_dir.mkdir()
        worker = CeleryWorker(redis_url=worker_redis_url, db_path=grading_db_path, log_dir=tmp_path)
        workers.append(worker)
        worker.start(
            concurrency=2,
            **{
                "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
                "SHIPSHAPE_WORKER_METRICS_ADDR": f"127.0.0.1:{port}",
                "SHIPSHAPE_METRICS_TOKEN": "",
                **env,
            },
        )
        return f"http://127.0.0.1:{port}/metrics"

    yield start
    for worker in workers:
        worker.stop()


def worker_exit(*, redis_url: str, tmp_path: Path, unset: tuple[str, ...] = (), **env: str) -> tuple[int, str]:
    """Runs a worker that is expected to stop at start; its exit status and output."""
    worker = CeleryWorker(redis_url=redis_url, db_path=tmp_path / "unused.sqlite3", log_dir=tmp_path)
    worker_env = {name: value for name, value in worker.env(**env).items() if name not in unset}
    finished = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--without-gossip"],
        cwd=REPO_ROOT,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return finished.returncode, finished.stdout + finished.stderr


def submit(lab, folder: Path) -> Revision:
    """A new learner's revision of `folder`'s files, stored and queued as an upload would be."""
    files = {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    with transaction.atomic():
        revision = make_stored_revision(lab=lab, user=make_user(), files=files, queued_at=timezone.now())
        revision_enqueue(revision=revision)
    return revision


@pytest.mark.docker
def test_it_counts_exactly_the_gradings_its_pool_processes_ran(metrics_worker, lab_factory):  # noqa: F811
    url = metrics_worker()
    before = scrape(url)

    lab = lab_factory(HELLO_LAB_DIR)
    # Two learners, so both gradings may run at once, each in one of the two pool processes.
    revisions = [submit(lab, HELLO / "good"), submit(lab, HELLO / "broken-output")]
    for revision in revisions:
        wait_for_state(revision, {"graded", "failed"})

    after = scrape(url)
    assert delta(before, after, "shipshape_gradings_total", outcome="graded") == 2
    assert delta(before, after, "shipshape_sandbox_peak_memory_bytes_count") == 2
    stored = collections.Counter(CheckResult.objects.filter(run__revision__in=revisions).values_list("kind", "status"))
    assert sum(stored.values()) == 6  # the lab's three checks, twice
    for (kind, status), count in stored.items():
        assert delta(before, after, "shipshape_check_results_total", kind=kind, status=status) == count
    assert sum(
        delta(before, after, name, **dict(labels)) for name, labels in after if name == "shipshape_check_results_total"
    ) == sum(stored.values())


def test_it_answers_401_without_the_token_when_one_is_set(metrics_worker):
    url = metrics_worker(SHIPSHAPE_METRICS_TOKEN=TOKEN)

    assert status_of(url) == 401
    assert status_of(url, Authorization="Bearer not-the-token-at-all-000") == 401
    assert status_of(url, Authorization=f"Basic {TOKEN}") == 401
    samples = scrape(url, token=TOKEN)
    assert ("shipshape_sandbox_peak_memory_bytes_count", ()) in samples


def test_it_stops_a_worker_whose_metrics_address_is_malformed(worker_redis_url, tmp_path):
    status, output = worker_exit(
        redis_url=worker_redis_url, tmp_path=tmp_path, SHIPSHAPE_WORKER_METRICS_ADDR="127.0.0.1:not-a-port"
    )

    assert status != 0
    assert "SHIPSHAPE_WORKER_METRICS_ADDR='127.0.0.1:not-a-port' is not an IP address and port" in output


def test_it_refuses_a_non_loopback_metrics_address_without_a_token(worker_redis_url, tmp_path):
    status, output = worker_exit(
        redis_url=worker_redis_url,
        tmp_path=tmp_path,
        SHIPSHAPE_WORKER_METRICS_ADDR="0.0.0.0:9101",
        SHIPSHAPE_METRICS_TOKEN="",
    )

    assert status != 0
    assert "is not a loopback address, and SHIPSHAPE_METRICS_TOKEN is not set" in output


def test_it_stops_a_worker_with_a_metrics_address_but_no_multiprocess_directory(worker_redis_url, tmp_path):
    status, output = worker_exit(
        redis_url=worker_redis_url,
        tmp_path=tmp_path,
        unset=("PROMETHEUS_MULTIPROC_DIR",),
        SHIPSHAPE_WORKER_METRICS_ADDR=f"127.0.0.1:{free_port()}",
    )

    assert status != 0
    assert "SHIPSHAPE_WORKER_METRICS_ADDR is set but PROMETHEUS_MULTIPROC_DIR is not" in output
