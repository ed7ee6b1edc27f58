"""Health endpoints that mean something: liveness is the process, readiness is every dependency.

/readyz: the database and Redis are required (either down: 503 "unavailable"). The workers are reported from
their heartbeats (labs/heartbeat.py): up, degraded (some report Docker down or the runner image missing) or down
(no fresh heartbeat). Workers that cannot grade do not make the web unready, since it can still serve pages and
take submissions that wait in the queue: the answer is 200 with status "degraded". The code cells' kernel managers
(kernels/manager.py) are reported the same way from their beats: none fresh makes the site "degraded", since only
code cells stop working. Errors and worker details go
only to internal callers (config.metrics.caller_is_internal); others see each status and latency.
"""

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.metrics import caller_is_internal
from kernels import protocol as kernels_protocol
from labs import heartbeat


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


DEPENDENCY_CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "redis": _check_redis,
}


def _beats(read: Callable[[redis.Redis], list[dict]]) -> tuple[list[dict], str | None, float]:
    """What `read` finds in Redis (heartbeats of some kind), the Redis error if any, and the latency in ms."""
    started = time.perf_counter()
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        beats, error = read(client), None
    except redis.RedisError as exc:
        beats, error = [], f"{type(exc).__name__}: {exc}"[:300]
    finally:
        client.close()
    return beats, error, round((time.perf_counter() - started) * 1000, 2)


def _workers() -> dict:
    beats, error, latency_ms = _beats(lambda client: heartbeat.heartbeats_read(client=client))
    now = time.time()
    result = {
        "status": heartbeat.workers_status(beats=beats, now=now),
        "latency_ms": latency_ms,
        "workers": [
            {
                "worker": beat["worker"],
                "age_seconds": round(now - beat["time"], 1),
                "fresh": now - beat["time"] <= heartbeat.heartbeat_ttl_seconds(),
                "docker": beat.get("docker"),
                "image": beat.get("image"),
            }
            for beat in beats
        ],
    }
    if error:
        result["error"] = error
    elif not beats:
        result["error"] = "no worker heartbeat in Redis: no Celery worker is running, or none can reach Redis"
    return result


def _kernels() -> dict:
    managers, error, latency_ms = _beats(lambda client: kernels_protocol.managers_read(client=client))
    result = {
        "status": "up" if managers else "down",
        "latency_ms": latency_ms,
        "managers": [
            {"host": m.get("host"), "kernels": m.get("kernels"), "capacity": m.get("capacity")} for m in managers
        ],
    }
    if error:
        result["error"] = error
    elif not managers:
        result["error"] = "no kernel manager beat in Redis: `manage.py kernel_manager` is not running on any host"
    return result


def _probe(check: Callable[[], None]) -> dict:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure means "down"; the reason is reported
        status, error = "down", f"{type(exc).__name__}: {exc}"
    else:
        status, error = "up", None
    result = {"status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    if error:
        result["error"] = error[:300]
    return result


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    dependencies = {name: _probe(check) for name, check in DEPENDENCY_CHECKS.items()}
    ready = all(dep["status"] == "up" for dep in dependencies.values())
    dependencies["workers"] = _workers()
    dependencies["kernels"] = _kernels()
    serving = dependencies["workers"]["status"] == "up" and dependencies["kernels"]["status"] == "up"
    status = ("ready" if serving else "degraded") if ready else "unavailable"
    if not caller_is_internal(request):
        dependencies = {
            name: {"status": d["status"], "latency_ms": d["latency_ms"]} for name, d in dependencies.items()
        }
    return JsonResponse({"status": status, "dependencies": dependencies}, status=200 if ready else 503)
