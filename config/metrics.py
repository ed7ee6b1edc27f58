"""The platform's own metrics, served at /metrics in Prometheus' text format (docs/architecture.md, Telemetry).

Every metric is declared here, so the web and the workers record into the same names. Processes: with
PROMETHEUS_MULTIPROC_DIR set (bin/run sets it, a directory under the data dir emptied at start), each gunicorn
worker and each Celery pool process writes its own files there and /metrics adds them all up, gradings included;
without it (tests, runserver), /metrics reads this process's registry. Queue depth is read from Redis at scrape
time, never stored. A worker on another host has its own directory: with SHIPSHAPE_WORKER_METRICS_ADDR set, its
main process serves that directory's sum itself (`worker_metrics_start`).

Not public: a caller gets /metrics (and /readyz's details) with `Authorization: Bearer <SHIPSHAPE_METRICS_TOKEN>`
or, when no token is configured, from a loopback address without proxy headers. Everyone else gets a 404.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from kernels import protocol as kernels_protocol

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


def bearer_matches(*, authorization: str, token: str) -> bool:
    """Whether an Authorization header carries `Bearer <token>` (compared in constant time)."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def caller_is_internal(request: HttpRequest) -> bool:
    """The bearer token when one is configured; otherwise a loopback address that no proxy forwarded."""
    token = settings.METRICS_TOKEN
    if token:
        return bearer_matches(authorization=request.headers.get("Authorization", ""), token=token)
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


class KernelsCollector:
    """The code cells' kernels per host and each host's cap, from the kernel managers' beats, read when scraped."""

    def collect(self):
        running = GaugeMetricFamily(
            "shipshape_kernels_running", "Code-cell kernels each kernel manager runs now.", labels=["host"]
        )
        capacity = GaugeMetricFamily(
            "shipshape_kernels_capacity", "Most code-cell kernels each kernel manager may run.", labels=["host"]
        )
        managers = GaugeMetricFamily("shipshape_kernel_managers", "Kernel managers with a fresh beat.")
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            beats = kernels_protocol.managers_read(client=client)
        except redis.RedisError:
            return
        finally:
            client.close()
        for beat in beats:
            host = str(beat.get("host", ""))
            running.add_metric([host], float(beat.get("kernels", 0)))
            capacity.add_metric([host], float(beat.get("capacity", 0)))
        managers.add_metric([], len(beats))
        yield running
        yield capacity
        yield managers


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(QueueDepthCollector())
    registry.register(KernelsCollector())
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


# The worker's own endpoint (SHIPSHAPE_WORKER_METRICS_ADDR). Gradings run in the pool's forked children, so the
# main process serves the sum of the worker's PROMETHEUS_MULTIPROC_DIR, as the web does with its own.


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the worker's shutdown


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per scrape on stderr would drown the worker's JSON log


def worker_metrics_app(*, token: str):
    """A WSGI app serving the multiprocess directory's sum at /metrics; 401 without the token when one is set."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry)

    def app(environ, start_response):
        if token and not bearer_matches(authorization=environ.get("HTTP_AUTHORIZATION", ""), token=token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"401: send Authorization: Bearer <SHIPSHAPE_METRICS_TOKEN>\n"]
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in {"GET", "HEAD"}:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"404: the metrics are at GET /metrics\n"]
        body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Cache-Control", "no-store")])
        return [body]

    return app


class WorkerMetricsError(Exception):
    """The worker's metrics endpoint cannot start as configured."""


def worker_metrics_start() -> WSGIServer | None:
    """Serve this worker's metrics on SHIPSHAPE_WORKER_METRICS_ADDR from a daemon thread (once, in the worker's main
    process); None when the setting is unset. Raises WorkerMetricsError when it cannot."""
    if settings.WORKER_METRICS_ADDR is None:
        return None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise WorkerMetricsError(
            "SHIPSHAPE_WORKER_METRICS_ADDR is set but PROMETHEUS_MULTIPROC_DIR is not: the gradings run in the pool's "
            "processes, whose metrics only reach this endpoint through that directory. Create an empty directory and "
            "set PROMETHEUS_MULTIPROC_DIR to it in the worker's environment."
        )
    host, port = settings.WORKER_METRICS_ADDR
    server_class = _ThreadingServer
    if ":" in host:
        server_class = type("_ThreadingServer6", (_ThreadingServer,), {"address_family": socket.AF_INET6})
    try:
        server = make_server(host, port, worker_metrics_app(token=settings.METRICS_TOKEN), server_class, _QuietHandler)
    except OSError as exc:
        raise WorkerMetricsError(f"SHIPSHAPE_WORKER_METRICS_ADDR: cannot listen on {host}:{port}: {exc}") from exc
    # Pool processes forked later (a replaced child) must not hold the port open after the main process is gone.
    os.register_at_fork(after_in_child=server.socket.close)
    threading.Thread(target=server.serve_forever, name="shipshape-worker-metrics", daemon=True).start()
    return server
