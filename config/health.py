"""Health endpoints that mean something: liveness is the process, readiness is every dependency."""

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


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
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "dependencies": dependencies},
        status=200 if ready else 503,
    )
