"""Quote service: ThreadingHTTPServer speaking HTTP/1.1 keep-alive, an enum-state breaker and a private
prometheus-client registry. (numpy is only used by train.py.)

Run: PORT=8000 UPSTREAM_URL=http://127.0.0.1:9000 python service.py
"""

import enum
import json
import math
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError
from urllib.parse import parse_qs, quote, urlsplit
from urllib.request import Request, urlopen

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


@dataclass(frozen=True)
class Settings:
    port: int = int(os.environ.get("PORT", "8000"))
    upstream: str = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9000").rstrip("/")
    attempts: int = 3
    attempt_timeout: float = 1.0
    deadline: float = 2.5
    backoff_base: float = 0.12  # waits are base * 2**n * f, f drawn once per request from [0.5, 1)
    failure_threshold: int = 5
    cooldown: float = 5.0
    health_timeout: float = 0.4


CFG = Settings()
REGISTRY = CollectorRegistry()  # only our three metrics, no process collectors
QUOTE_REQUESTS = Counter("quote_requests_total", "Answers to /quote by HTTP status", ["status"], registry=REGISTRY)
QUOTE_DURATION = Histogram("quote_request_duration_seconds", "Time to answer /quote", registry=REGISTRY,
                           buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 5.0))
UPSTREAM_ERRORS = Counter("upstream_errors_total", "Failed upstream attempts", registry=REGISTRY)


def emit(level, event, **fields):
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    print(json.dumps({"ts": stamp, "level": level, "event": event, **fields}), flush=True)


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    threshold: int
    cooldown: float
    state: State = State.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def permit(self) -> bool:
        with self._lock:
            if self.state is State.OPEN and time.monotonic() - self.opened_at >= self.cooldown:
                self.state = State.HALF_OPEN
                return True  # the single trial call
            return self.state is State.CLOSED

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.state, self.failures = State.CLOSED, 0
                return
            self.failures += 1
            if self.state is State.HALF_OPEN or self.failures >= self.threshold:
                self.state, self.opened_at = State.OPEN, time.monotonic()


BREAKER = CircuitBreaker(CFG.failure_threshold, CFG.cooldown)
LAST_GOOD: dict[str, float] = {}


def price_from(body: bytes) -> float | None:
    """The upstream price if the body honours the contract, else None."""
    try:
        value = json.loads(body).get("price")
    except (ValueError, AttributeError):
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def one_attempt(sku: str, rid: str, timeout: float) -> tuple[float | None, bool]:
    """Return (price, retryable). price is None on any failure."""
    req = Request(f"{CFG.upstream}/price?sku={quote(sku, safe='')}", headers={"X-Request-ID": rid})
    try:
        with urlopen(req, timeout=timeout) as resp:
            return price_from(resp.read(1 << 16)), False
    except HTTPError as exc:
        exc.close()
        return None, exc.code >= 500
    except (OSError, HTTPException):
        return None, True


def live_price(sku: str, rid: str) -> tuple[float | None, int]:
    deadline = time.monotonic() + CFG.deadline
    factor = random.uniform(0.5, 1.0)  # this request's jitter
    used = 0
    for n in range(CFG.attempts):
        budget = deadline - time.monotonic()
        if budget < 0.05 or not BREAKER.permit():
            break
        used += 1
        price, retryable = one_attempt(sku, rid, min(CFG.attempt_timeout, budget))
        BREAKER.record(price is not None)
        if price is not None:
            return price, used
        UPSTREAM_ERRORS.inc()
        if not retryable or n == CFG.attempts - 1:
            break
        time.sleep(max(0.0, min(CFG.backoff_base * 2**n * factor, deadline - time.monotonic())))
    return None, used


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    timeout = 30  # close idle keep-alive connections

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        began = time.monotonic()
        rid = self.headers.get("X-Request-ID", "")
        if not re.fullmatch(r"[\w.-]{1,100}", rid, flags=re.ASCII):
            rid = uuid.uuid4().hex
        url = urlsplit(self.path)
        handler = {"/quote": self.quote, "/health": self.health, "/metrics": self.metrics}.get(url.path, self.missing)
        try:
            status, ctype, body, extra = handler(url, rid)
        except Exception as exc:
            status, ctype, body, extra = 500, "application/json", {"error": "internal error"}, {"error": repr(exc)}
        if url.path == "/quote":
            QUOTE_REQUESTS.labels(status=str(status)).inc()
            QUOTE_DURATION.observe(time.monotonic() - began)
        emit("info" if status < 500 else "error", "http_request", request_id=rid, method="GET", path=url.path,
             status=status, duration_ms=round(1000 * (time.monotonic() - began), 1), **extra)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-ID", rid)
        self.end_headers()
        self.wfile.write(data)

    def quote(self, url, rid):
        sku = parse_qs(url.query).get("sku", [""])[0]
        if not sku:
            return 400, "application/json", {"error": "missing query parameter: sku"}, {}
        price, attempts = live_price(sku, rid)
        if price is not None:
            LAST_GOOD[sku] = round(price * 1.2, 2)
            source = "live"
        elif sku in LAST_GOOD:
            source = "cache"
        else:
            body = {"error": "upstream unavailable", "sku": sku}
            return 503, "application/json", body, {"source": None, "upstream_attempts": attempts}
        body = {"sku": sku, "price": LAST_GOOD[sku], "currency": "EUR", "source": source}
        return 200, "application/json", body, {"source": source, "upstream_attempts": attempts}

    def health(self, url, rid):
        try:
            with urlopen(Request(f"{CFG.upstream}/price?sku=_health", headers={"X-Request-ID": rid}),
                         timeout=CFG.health_timeout):
                reachable = True
        except HTTPError as exc:
            exc.close()
            reachable = exc.code < 500
        except (OSError, HTTPException):
            reachable = False
        if reachable:
            return 200, "application/json", {"status": "ok"}, {}
        return 503, "application/json", {"status": "unavailable"}, {}

    def metrics(self, url, rid):
        return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(REGISTRY), {}

    def missing(self, url, rid):
        return 404, "application/json", {"error": "not found", "path": url.path}, {}


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # a deeper listen backlog than socketserver's 5


if __name__ == "__main__":
    httpd = Server(("127.0.0.1", CFG.port), Handler)
    emit("info", "service_started", port=CFG.port, upstream=CFG.upstream, cooldown_s=CFG.cooldown)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        emit("info", "service_stopped")
