"""/readyz and the workers' heartbeats: fresh, stale or missing heartbeats make the workers up, degraded or down."""

from __future__ import annotations

import json
import time

import pytest
import redis
from django.test import Client

from kernels import protocol as kernels_protocol
from labs import heartbeat

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

GOOD = {"docker": {"status": "up", "latency_ms": 1.5}, "image": {"name": "runner", "present": True, "id": "sha256:ab"}}
NO_IMAGE = {"docker": {"status": "up", "latency_ms": 1.5}, "image": {"name": "runner", "present": False, "id": ""}}
NO_DOCKER = {
    "docker": {"status": "down", "latency_ms": 0.5, "error": "ConnectionError: no socket"},
    "image": {"name": "runner", "present": False, "id": ""},
}


@pytest.fixture
def beats(redis_server, monkeypatch, settings):
    """Writes heartbeats under a prefix of this test's own, so a running test worker's heartbeats never count."""
    monkeypatch.setattr(heartbeat, "KEY_PREFIX", f"test-heartbeat:{time.monotonic_ns()}:")
    monkeypatch.setattr(kernels_protocol, "PREFIX", f"test-kernels:{time.monotonic_ns()}:")
    settings.HEARTBEAT_SECONDS = 10
    client = redis.Redis.from_url(redis_server.url)

    def write(worker: str, *, age_seconds: float = 0, **parts) -> None:
        heartbeat.heartbeat_write(client=client, beat={"worker": worker, "time": time.time() - age_seconds, **parts})

    yield write
    for prefix in (heartbeat.KEY_PREFIX, kernels_protocol.PREFIX):
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
    client.close()


def kernel_manager_beat(redis_server, *, host: str = "host-a") -> None:
    beat = {"instance": "i1", "host": host, "kernels": 2, "capacity": 20, "time": time.time()}
    client = redis.Redis.from_url(redis_server.url)
    client.set(kernels_protocol.manager_key("i1"), json.dumps(beat), ex=kernels_protocol.BEAT_TTL_SECONDS)
    client.close()


def test_it_reports_workers_up_when_every_fresh_heartbeat_can_grade(beats, redis_server):
    beats("w1@host-a", **GOOD)
    beats("w2@host-b", **GOOD)
    kernel_manager_beat(redis_server)

    response = Client().get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    workers = body["dependencies"]["workers"]
    assert workers["status"] == "up"
    assert workers["latency_ms"] >= 0
    assert {w["worker"] for w in workers["workers"]} == {"w1@host-a", "w2@host-b"}
    assert workers["workers"][0]["image"]["id"] == "sha256:ab"
    assert body["dependencies"]["kernels"]["status"] == "up"


def test_it_is_degraded_and_says_why_when_no_kernel_manager_beats(beats):
    beats("w1@host-a", **GOOD)

    response = Client().get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["dependencies"]["workers"]["status"] == "up"
    assert body["dependencies"]["kernels"]["status"] == "down"


def test_it_reports_the_kernel_managers_hosts_and_kernels_to_internal_callers(beats, redis_server, settings):
    settings.METRICS_TOKEN = "t" * 32
    beats("w1@host-a", **GOOD)
    kernel_manager_beat(redis_server, host="host-k")

    body = Client().get("/readyz", HTTP_AUTHORIZATION="Bearer " + "t" * 32).json()

    assert body["status"] == "ready"
    assert body["dependencies"]["kernels"]["managers"] == [{"host": "host-k", "kernels": 2, "capacity": 20}]


@pytest.mark.parametrize("bad", [NO_IMAGE, NO_DOCKER], ids=["image missing", "docker down"])
def test_it_reports_workers_degraded_when_a_fresh_heartbeat_cannot_grade_but_keeps_serving(beats, bad):
    beats("w1@host-a", **GOOD)
    beats("w2@host-b", **bad)

    response = Client().get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["dependencies"]["workers"]["status"] == "degraded"
    assert body["dependencies"]["database"]["status"] == "up"


def test_it_reports_workers_down_when_no_heartbeat_is_fresh(beats):
    beats("w1@host-a", age_seconds=31, **GOOD)  # older than three beats of 10 s

    response = Client().get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    workers = body["dependencies"]["workers"]
    assert workers["status"] == "down"
    assert workers["workers"][0]["fresh"] is False


def test_it_reports_workers_down_and_says_why_when_there_is_no_heartbeat(beats):
    body = Client().get("/readyz").json()

    assert body["dependencies"]["workers"]["status"] == "down"
    assert "no worker heartbeat" in body["dependencies"]["workers"]["error"]
    assert body["dependencies"]["workers"]["workers"] == []


def test_it_forgets_a_heartbeat_after_three_beats(beats, redis_server, settings):
    beats("w1@host-a", **GOOD)
    ttl = redis.Redis.from_url(redis_server.url).ttl(heartbeat.KEY_PREFIX + "w1@host-a")
    assert 0 < ttl <= 3 * settings.HEARTBEAT_SECONDS


def test_it_shows_outsiders_only_each_status_and_latency(beats):
    beats("w1@host-a", **NO_DOCKER)

    body = Client(REMOTE_ADDR="203.0.113.9").get("/readyz").json()

    assert body["status"] == "degraded"
    for name, dependency in body["dependencies"].items():
        assert set(dependency) == {"status", "latency_ms"}, name
    assert "host-a" not in str(body)


def test_it_shows_details_to_a_caller_with_the_token(beats, settings):
    settings.METRICS_TOKEN = "readyz-token-for-tests-0123456789"
    beats("w1@host-a", **NO_DOCKER)

    outsider = Client(REMOTE_ADDR="203.0.113.9")
    assert "error" not in str(outsider.get("/readyz").json())
    assert "host-a" not in str(Client().get("/readyz").json())  # loopback needs the token once one is configured
    body = outsider.get("/readyz", headers={"Authorization": f"Bearer {settings.METRICS_TOKEN}"}).json()
    assert body["dependencies"]["workers"]["workers"][0]["docker"]["error"] == "ConnectionError: no socket"


def test_it_is_503_for_outsiders_too_when_redis_is_down_without_saying_why(beats, redis_server):
    redis_server.stop()
    try:
        response = Client(REMOTE_ADDR="203.0.113.9").get("/readyz")
    finally:
        redis_server.start()

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["dependencies"]["redis"] == {
        "status": "down",
        "latency_ms": body["dependencies"]["redis"]["latency_ms"],
    }
    assert body["dependencies"]["workers"]["status"] == "down"


def test_heartbeat_observe_reports_an_unreachable_engine_as_down(settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"

    beat = heartbeat.heartbeat_observe(worker="w1@host-a")

    assert beat["worker"] == "w1@host-a"
    assert beat["docker"]["status"] == "down"
    assert beat["docker"]["error"]
    assert beat["image"]["present"] is False
    assert not heartbeat.beat_can_grade(beat)


@pytest.mark.docker
def test_it_reports_workers_up_from_a_real_workers_heartbeat(
    redis_server, runner_image, docker_client, settings, tmp_path
):
    from tests.labs.conftest import CeleryWorker

    # Its own Redis database, so another test worker's heartbeats (same Redis, same worker name) never count.
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    settings.REDIS_URL = url
    client = redis.Redis.from_url(url)
    client.flushdb()
    worker = CeleryWorker(redis_url=url, db_path=tmp_path / "worker.sqlite3", log_dir=tmp_path)
    worker.start(SHIPSHAPE_HEARTBEAT_SECONDS="1")
    try:
        for _ in range(100):  # the first beat is written at worker_ready; later ones every second
            workers = Client().get("/readyz").json()["dependencies"]["workers"]
            if workers["status"] == "up":
                break
            time.sleep(0.2)
        assert workers["status"] == "up", (workers, worker.log()[-3000:])
        (beat,) = workers["workers"]
        assert beat["worker"].startswith("test-worker-")
        assert beat["docker"]["status"] == "up"
        assert beat["docker"]["engine_id"] == docker_client.info()["ID"]
        assert beat["image"]["present"] is True
        assert beat["image"]["id"] == runner_image
    finally:
        worker.stop()
        client.flushdb()
        client.close()
