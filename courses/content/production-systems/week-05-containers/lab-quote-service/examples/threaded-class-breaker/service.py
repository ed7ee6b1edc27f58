"""Quote service: ThreadingHTTPServer, a CircuitBreaker class and prometheus-client metrics.

Run: PORT=8000 UPSTREAM_URL=http://127.0.0.1:9000 python service.py
"""

import json
import math
import os
import random
import re
import sys
import threading
import time
import traceback
import uuid
from datetime import datetime, timezone
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError
from urllib.parse import parse_qs, quote, urlsplit
from urllib.request import Request, urlopen

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

PORT = int(os.environ.get("PORT", "8000"))
UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9000").rstrip("/")

TAX = 1.2
ATTEMPTS = 3  # one call and two retries
ATTEMPT_TIMEOUT_S = 1.0
REQUEST_BUDGET_S = 2.5  # leaves half a second of the 3 s promise for the fallback and the answer
BACKOFF_STEP_S = 0.08  # full jitter: waits of 0-0.16 s, then 0-0.32 s
HEALTH_TIMEOUT_S = 0.5
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")

REQUESTS = Counter("quote_requests_total", "Answers to /quote by HTTP status", ["status"])
LATENCY = Histogram(
    "quote_request_duration_seconds",
    "Time to answer /quote",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 5.0),
)
UPSTREAM_ERRORS = Counter("upstream_errors_total", "Failed upstream attempts, whatever the cause")


def log(level, event, **fields):
    ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    print(json.dumps({"ts": ts, "level": level, "event": event, **fields}), flush=True)


class CircuitBreaker:
    """Closed -> open after `threshold` consecutive failures -> half-open after `cooldown_s`."""

    def __init__(self, threshold=5, cooldown_s=7.0):
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = None  # monotonic time of the failure that opened it
        self._trial_in_flight = False

    def allow(self):
        """Ask before every attempt. In half-open state exactly one caller gets True."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial_in_flight or time.monotonic() - self._opened_at < self.cooldown_s:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self):
        with self._lock:
            self._failures, self._opened_at, self._trial_in_flight = 0, None, False

    def record_failure(self):
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.threshold:
                self._opened_at = time.monotonic()
                self._trial_in_flight = False


class AttemptFailed(Exception):
    def __init__(self, reason, retryable):
        super().__init__(reason)
        self.retryable = retryable


breaker = CircuitBreaker(threshold=5, cooldown_s=7.0)
last_good = {}  # sku -> last quoted price (already taxed)
last_good_lock = threading.Lock()


def parse_price(body):
    try:
        doc = json.loads(body)
    except ValueError:
        raise AttemptFailed("upstream body is not JSON", retryable=False) from None
    price = doc.get("price") if isinstance(doc, dict) else None
    if isinstance(price, bool) or not isinstance(price, (int, float)):
        raise AttemptFailed(f"price is {price!r}, not a number", retryable=False)
    if not math.isfinite(price) or price < 0:
        raise AttemptFailed(f"price {price!r} out of range", retryable=False)
    return float(price)


def call_upstream(sku, request_id, timeout):
    req = Request(f"{UPSTREAM_URL}/price?sku={quote(sku, safe='')}", headers={"X-Request-ID": request_id})
    try:
        with urlopen(req, timeout=timeout) as resp:
            body = resp.read(65536)
    except HTTPError as exc:  # must come before OSError, it is a subclass
        exc.close()
        raise AttemptFailed(f"upstream answered {exc.code}", retryable=exc.code >= 500) from None
    except (OSError, HTTPException) as exc:  # timeout, refused, reset, garbled
        raise AttemptFailed(f"{type(exc).__name__}: {exc}", retryable=True) from None
    return parse_price(body)


def get_quote(sku, request_id):
    """Return (status, body, details) within the request budget."""
    deadline = time.monotonic() + REQUEST_BUDGET_S
    attempts, reason = 0, "circuit open"
    for attempt in range(ATTEMPTS):
        left = deadline - time.monotonic()
        if left < 0.05:
            reason = "request budget spent"
            break
        if not breaker.allow():
            break
        attempts += 1
        try:
            price = call_upstream(sku, request_id, min(ATTEMPT_TIMEOUT_S, left))
        except AttemptFailed as exc:
            breaker.record_failure()
            UPSTREAM_ERRORS.inc()
            reason = str(exc)
            if not exc.retryable or attempt == ATTEMPTS - 1:
                break
            # Full jitter: anywhere between nothing and the exponential step, so retries from many
            # callers spread out; on average each wait is twice the one before.
            step = BACKOFF_STEP_S * 2 ** (attempt + 1)
            wait = random.uniform(0, step)
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
            continue
        breaker.record_success()
        quoted = round(price * TAX, 2)
        with last_good_lock:
            last_good[sku] = quoted
        body = {"sku": sku, "price": quoted, "currency": "EUR", "source": "live"}
        return 200, body, {"source": "live", "upstream_attempts": attempts}
    with last_good_lock:
        cached = last_good.get(sku)
    if cached is not None:
        body = {"sku": sku, "price": cached, "currency": "EUR", "source": "cache"}
        return 200, body, {"source": "cache", "upstream_attempts": attempts, "reason": reason}
    body = {"error": "upstream unavailable", "sku": sku}
    return 503, body, {"source": "none", "upstream_attempts": attempts, "reason": reason}


def upstream_reachable(request_id):
    """A direct probe, outside the breaker: any answer below 500 counts as reachable."""
    req = Request(f"{UPSTREAM_URL}/price?sku=health-probe", headers={"X-Request-ID": request_id})
    try:
        with urlopen(req, timeout=HEALTH_TIMEOUT_S) as resp:
            resp.read(65536)
        return True, None
    except HTTPError as exc:
        exc.close()
        return exc.code < 500, f"upstream answered {exc.code}"
    except (OSError, HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"


class QuoteHandler(BaseHTTPRequestHandler):
    server_version = "quote-service/1.0"

    def log_message(self, format, *args):
        pass  # the JSON line written in do_GET is the access log

    def do_GET(self):
        started = time.monotonic()
        request_id = self.headers.get("X-Request-ID", "")
        if not VALID_REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        url = urlsplit(self.path)
        try:
            status, body, content_type, details = self.route(url, request_id)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            status, body, content_type, details = 500, {"error": "internal error"}, "application/json", {}
        if url.path == "/quote":
            REQUESTS.labels(status=str(status)).inc()
            LATENCY.observe(time.monotonic() - started)
        # Log before answering, so the line is on stdout by the time the caller has its answer.
        log(
            "info" if status < 500 else "error",
            "request",
            request_id=request_id,
            method="GET",
            path=url.path,
            status=status,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            **details,
        )
        if content_type == "application/json":
            body = json.dumps(body).encode()
        self.send(status, body, content_type, request_id)

    def route(self, url, request_id):
        """Return (status, body, content type, extra log fields)."""
        if url.path == "/quote":
            sku = parse_qs(url.query).get("sku", [""])[0]
            if not sku:
                return 400, {"error": "query parameter sku is required"}, "application/json", {}
            status, body, details = get_quote(sku, request_id)
            return status, body, "application/json", details
        if url.path == "/health":
            ok, why = upstream_reachable(request_id)
            if ok:
                return 200, {"status": "ok"}, "application/json", {}
            return 503, {"status": "unavailable", "reason": why}, "application/json", {}
        if url.path == "/metrics":
            return 200, generate_latest(), CONTENT_TYPE_LATEST, {}
        return 404, {"error": "not found"}, "application/json", {}

    def send(self, status, body, content_type, request_id):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Request-ID", request_id)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller gave up; the log line still records what we meant to answer


class QuoteServer(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops connections in a burst (1 s SYN retry)


if __name__ == "__main__":
    server = QuoteServer(("127.0.0.1", PORT), QuoteHandler)
    log("info", "startup", port=PORT, upstream=UPSTREAM_URL, breaker_cooldown_s=breaker.cooldown_s)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log("info", "shutdown")
