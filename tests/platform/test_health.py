import pytest


def test_healthz_answers_ok_without_touching_dependencies(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
@pytest.mark.redis
def test_readyz_lists_each_dependency_with_its_latency(client, redis_server):
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    # The workers are reported from their heartbeats (tests/platform/test_readyz.py); none need run here.
    assert set(body["dependencies"]) == {"database", "redis", "workers", "kernels"}
    serving = all(body["dependencies"][name]["status"] == "up" for name in ("workers", "kernels"))
    assert body["status"] == ("ready" if serving else "degraded")
    for name, dependency in body["dependencies"].items():
        if name not in ("workers", "kernels"):
            assert dependency["status"] == "up"
        assert isinstance(dependency["latency_ms"], float | int)
        assert dependency["latency_ms"] >= 0


@pytest.mark.django_db
@pytest.mark.redis
def test_readyz_is_503_and_names_redis_when_redis_is_down(client, redis_server):
    redis_server.stop()
    try:
        response = client.get("/readyz")
    finally:
        redis_server.start()

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["dependencies"]["redis"]["status"] == "down"
    assert body["dependencies"]["redis"]["error"]
    assert body["dependencies"]["database"]["status"] == "up"


@pytest.mark.django_db
@pytest.mark.redis
def test_readyz_recovers_once_redis_is_back(client, redis_server):
    redis_server.restart()

    assert client.get("/readyz").status_code == 200
