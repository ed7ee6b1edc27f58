"""The platform's own metrics, served at /metrics in Prometheus' text format (docs/architecture.md, Telemetry).

Every metric is declared here, so the web and the workers record into the same names. Processes: with
PROMETHEUS_MULTIPROC_DIR set (bin/run sets it, a directory under the data dir emptied at start), each gunicorn
worker and each Celery pool process writes its own files there and /metrics adds them all up, gradings included;
without it (tests, runserver), /metrics reads this process's registry. Queue depth is read from Redis at scrape
time, never stored.

Not public: a caller gets /metrics (and /readyz's details) with `Authorization: Bearer <SHIPSHAPE_METRICS_TOKEN>`
or, when no token is configured, from a loopback address without proxy headers. Everyone else gets a 404.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

import redis
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

HTTP_REQUESTS = Counter(
    "shipshape_http_requests",
    "HTTP requests answered, by URL pattern (never the raw path) and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "shipshape_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL pattern.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GRADINGS = Counter("shipshape_gradings", "Grading runs ended, by outcome.", ["outcome"])
GRADING_PHASE_SECONDS = Histogram(
    "shipshape_grading_phase_duration_seconds",
    "Time a grading run spent in each phase, from its phase stamps (queued: waiting for a worker).",
    ["phase"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
SANDBOX_PEAK_MEMORY_BYTES = Histogram(
    "shipshape_sandbox_peak_memory_bytes",
    "Peak memory of a grading run's sandbox.",
    buckets=tuple(2**n * 1024 * 1024 for n in range(4, 13)),  # 16 MiB … 4 GiB
)
CHECK_RESULTS = Counter(
    "shipshape_check_results", "Check results stored, by check kind and status.", ["kind", "status"]
)

UNMATCHED_ROUTE = "<unmatched>"
_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def caller_is_internal(request: HttpRequest) -> bool:
    """The bearer token when one is configured; otherwise a loopback address that no proxy forwarded."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return address in _LOOPBACK and not any(request.META.get(header) for header in _PROXY_HEADERS)


def http_request_observe(*, request: HttpRequest, status: int, seconds: float) -> None:
    """Count one answered request under its URL pattern's route, so ids in paths add no label values."""
    match = getattr(request, "resolver_match", None)
    route = (match.route or match.view_name) if match is not None else UNMATCHED_ROUTE
    method = request.method if request.method in {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} else "OTHER"
    HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    HTTP_REQUEST_SECONDS.labels(method=method, route=route).observe(seconds)


class QueueDepthCollector:
    """LLEN of each Celery queue's Redis list, read when scraped."""

    def collect(self):
        family = GaugeMetricFamily(
            "shipshape_queue_depth", "Messages waiting in each Celery queue (Redis LLEN).", labels=["queue"]
        )
        up = GaugeMetricFamily("shipshape_queue_depth_up", "1 if the queue depths could be read from Redis.")
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            for queue in settings.METRICS_QUEUES:
                family.add_metric([queue], client.llen(queue))
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        finally:
            client.close()
        up.add_metric([], 1)
        yield family
        yield up


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(QueueDepthCollector())
    return registry


class _ThisProcess:
    def collect(self):
        yield from REGISTRY.collect()


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not caller_is_internal(request):
        raise Http404
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
