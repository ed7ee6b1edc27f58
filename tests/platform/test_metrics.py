"""/metrics: parsed with prometheus-client's own parser; counters move by exactly the traffic sent."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from labs.models import CheckResult, GradingRun, Revision
from labs.telemetry import grading_run_observe
from tests.courses import factories as course_factories
from tests.labs import factories as lab_factories

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-tests-0123456789"
LESSON_ROUTE = "courses/<slug:course_slug>/<slug:unit_slug>/<slug:lesson_slug>/"


def scrape(client: Client | None = None, **headers: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = (client or Client()).get("/metrics", headers=headers)
    assert response.status_code == 200, response.status_code
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.django_db
def test_it_counts_exactly_the_requests_sent_to_a_route_under_its_pattern_not_its_path():
    course = course_factories.course_create(slug="shipping")
    unit = course_factories.unit_create(course=course, position=1, slug="week-01")
    course_factories.lesson_create(unit=unit, position=1, slug="pinning")
    course_factories.lesson_create(unit=unit, position=2, slug="rollbacks")
    before = scrape()

    client = Client()
    for path in ("pinning", "rollbacks", "pinning"):
        assert client.get(f"/courses/shipping/week-01/{path}/").status_code == 200
    assert client.get("/courses/shipping/week-01/nope/").status_code == 404

    after = scrape()
    name = "shipshape_http_requests_total"
    assert (
        value(after, name, method="GET", route=LESSON_ROUTE, status="200")
        - value(before, name, method="GET", route=LESSON_ROUTE, status="200")
        == 3
    )
    assert (
        value(after, name, method="GET", route=LESSON_ROUTE, status="404")
        - value(before, name, method="GET", route=LESSON_ROUTE, status="404")
        == 1
    )
    histogram = "shipshape_http_request_duration_seconds_count"
    assert (
        value(after, histogram, method="GET", route=LESSON_ROUTE)
        - value(before, histogram, method="GET", route=LESSON_ROUTE)
        == 4
    )
    assert not any("pinning" in str(labels) for _, labels in after), "a raw path became a label value"


def test_it_counts_a_path_no_pattern_matches_under_one_label():
    before = scrape()
    Client().get("/no/such/page/1/")
    Client().get("/no/such/page/2/")
    after = scrape()
    name = "shipshape_http_requests_total"
    labels = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(after, name, **labels) - value(before, name, **labels) == 2


@pytest.mark.parametrize(
    ("configured", "remote_addr", "headers", "expected"),
    [
        ("", "127.0.0.1", {}, 200),  # loopback, no token configured
        ("", "::1", {}, 200),
        ("", "203.0.113.9", {}, 404),  # anyone else without a token configured
        ("", "127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, 404),  # a proxy on this host forwarded it
        (TOKEN, "203.0.113.9", {}, 404),  # no token sent
        (TOKEN, "203.0.113.9", {"Authorization": "Bearer wrong-token-wrong-token-00"}, 404),
        (TOKEN, "127.0.0.1", {}, 404),  # with a token configured, loopback needs it too
        (TOKEN, "203.0.113.9", {"Authorization": f"Bearer {TOKEN}"}, 200),
        (TOKEN, "203.0.113.9", {"Authorization": f"bearer {TOKEN}"}, 200),
    ],
)
def test_it_serves_metrics_only_to_the_token_or_loopback(settings, configured, remote_addr, headers, expected):
    settings.METRICS_TOKEN = configured
    response = Client(REMOTE_ADDR=remote_addr).get("/metrics", headers=headers)
    assert response.status_code == expected
    if expected == 200:
        assert response["Content-Type"].startswith("text/plain")
        assert "no-store" in response["Cache-Control"]
        assert "Set-Cookie" not in response
        assert b"shipshape_http_requests_total" in response.content


@pytest.mark.django_db
def test_it_records_a_finished_runs_outcome_phases_memory_and_check_results():
    lab = lab_factories.make_lab()
    revision = Revision.objects.create(
        lab=lab, user=lab_factories.make_user(), number=1, state="graded", tree_sha256="a" * 64, files=[]
    )
    t0 = timezone.now()
    run = GradingRun.objects.create(
        revision=revision,
        attempt=1,
        phase="results_stored",
        outcome="graded",
        queued_at=t0,
        started_at=t0 + timedelta(seconds=2),
        sandbox_ready_at=t0 + timedelta(seconds=3),
        checks_finished_at=t0 + timedelta(seconds=13),
        results_stored_at=t0 + timedelta(seconds=13, milliseconds=500),
        resources={"peak_memory_bytes": 100 * 1024 * 1024},
    )
    for position, (kind, status) in enumerate(
        [("files.required", "pass"), ("http.probe", "fail"), ("http.probe", "fail")]
    ):
        CheckResult.objects.create(
            run=run, position=position, check_id=f"c{position}", kind=kind, category="correctness",
            status=status, points=0, max_points=1,
        )  # fmt: skip
    before = scrape()

    grading_run_observe(run=run)

    after = scrape()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("shipshape_gradings_total", outcome="graded") == 1
    phases = "shipshape_grading_phase_duration_seconds"
    assert grew(f"{phases}_sum", phase="queued") == pytest.approx(2)
    assert grew(f"{phases}_sum", phase="started") == pytest.approx(1)
    assert grew(f"{phases}_sum", phase="sandbox_ready") == pytest.approx(10)
    assert grew(f"{phases}_sum", phase="checks_finished") == pytest.approx(0.5)
    assert grew(f"{phases}_count", phase="queued") == 1
    assert grew("shipshape_sandbox_peak_memory_bytes_count") == 1
    buckets = {
        float(dict(labels)["le"]): key for key in after if key[0].endswith("memory_bytes_bucket") for labels in [key[1]]
    }
    assert after[buckets[64 * 1024 * 1024]] - before.get(buckets[64 * 1024 * 1024], 0) == 0
    assert after[buckets[128 * 1024 * 1024]] - before.get(buckets[128 * 1024 * 1024], 0) == 1
    assert grew("shipshape_check_results_total", kind="files.required", status="pass") == 1
    assert grew("shipshape_check_results_total", kind="http.probe", status="fail") == 2


@pytest.mark.django_db
def test_it_counts_a_run_that_ended_in_our_error_without_phases_it_never_reached():
    lab = lab_factories.make_lab()
    revision = Revision.objects.create(
        lab=lab, user=lab_factories.make_user(), number=1, state="queued", tree_sha256="a" * 64, files=[]
    )
    t0 = timezone.now()
    run = GradingRun.objects.create(
        revision=revision, attempt=1, phase="error", outcome="error", queued_at=t0, started_at=t0 + timedelta(seconds=1)
    )
    running = GradingRun.objects.create(revision=revision, attempt=2, phase="started", outcome="")
    before = scrape()

    grading_run_observe(run=run)
    grading_run_observe(run=running)  # not ended: nothing counted

    after = scrape()
    assert (
        value(after, "shipshape_gradings_total", outcome="error")
        - value(before, "shipshape_gradings_total", outcome="error")
        == 1
    )
    assert sum(after.get(key, 0) - before.get(key, 0) for key in after if key[0] == "shipshape_gradings_total") == 1
    phases = "shipshape_grading_phase_duration_seconds_count"
    assert value(after, phases, phase="started") == value(before, phases, phase="started")


@pytest.mark.redis
def test_it_reads_each_queues_depth_from_redis_when_scraped(settings, redis_server):
    settings.METRICS_QUEUES = ["test-metrics-short", "test-metrics-long"]
    client = redis.Redis.from_url(redis_server.url)
    client.delete(*settings.METRICS_QUEUES)
    try:
        client.rpush("test-metrics-short", "a", "b", "c")
        assert value(scrape(), "shipshape_queue_depth", queue="test-metrics-short") == 3
        client.rpush("test-metrics-short", "d")
        client.lpop("test-metrics-short")
        client.rpush("test-metrics-long", "x")
        samples = scrape()
        assert value(samples, "shipshape_queue_depth", queue="test-metrics-short") == 3
        assert value(samples, "shipshape_queue_depth", queue="test-metrics-long") == 1
        assert value(samples, "shipshape_queue_depth_up") == 1
    finally:
        client.delete(*settings.METRICS_QUEUES)
        client.close()


@pytest.mark.redis
def test_it_still_serves_metrics_when_redis_is_down_and_says_the_depth_is_unknown(settings, redis_server):
    redis_server.stop()
    try:
        samples = scrape()
    finally:
        redis_server.start()
    assert value(samples, "shipshape_queue_depth_up") == 0
    assert not any(name == "shipshape_queue_depth" for name, _ in samples)


SCRAPE_IN_A_WEB_PROCESS = """
import django
django.setup()
from django.test import Client
print(Client().get("/metrics").content.decode())
"""


def test_it_adds_up_every_process_in_multiprocess_mode(tmp_path):
    """Two processes (a grading worker's, say) record; a third, the web, serves the sum at /metrics."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REDIS_URL": "redis://127.0.0.1:9/0",  # nothing answers: the depth is reported unknown, quickly
    }
    record = "from config import metrics; metrics.GRADINGS.labels(outcome='graded').inc()"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", record], env=env, cwd=REPO_ROOT, check=True)

    scraped = subprocess.run(
        [sys.executable, "-c", SCRAPE_IN_A_WEB_PROCESS],
        env=env,
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    samples = {}
    for family in text_string_to_metric_families(scraped[scraped.index("# HELP") :]):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert value(samples, "shipshape_gradings_total", outcome="graded") == 2
    assert value(samples, "shipshape_queue_depth_up") == 0


@pytest.mark.redis
def test_it_reports_each_kernel_managers_kernels_and_cap(redis_server, monkeypatch):
    import json
    import time

    from kernels import protocol as kernels_protocol

    monkeypatch.setattr(kernels_protocol, "PREFIX", f"test-metrics-kernels:{time.monotonic_ns()}:")
    client = redis.Redis.from_url(redis_server.url)
    beat = {"instance": "k1", "host": "host-k", "kernels": 4, "capacity": 20, "time": time.time()}
    client.set(kernels_protocol.manager_key("k1"), json.dumps(beat), ex=60)
    try:
        samples = scrape()
    finally:
        client.delete(kernels_protocol.manager_key("k1"))
        client.close()

    assert value(samples, "shipshape_kernels_running", host="host-k") == 4
    assert value(samples, "shipshape_kernels_capacity", host="host-k") == 20
    assert value(samples, "shipshape_kernel_managers") == 1
