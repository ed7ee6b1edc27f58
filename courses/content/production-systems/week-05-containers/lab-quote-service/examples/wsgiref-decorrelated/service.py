"""Quote service as a plain WSGI app served by wsgiref (one thread per request). Standard library only.

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
import uuid
from datetime import datetime, timezone
from http.client import HTTPException
from socketserver import ThreadingMixIn
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlencode
from urllib.request import Request, urlopen
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

PORT = int(os.environ.get("PORT", "8000"))
UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9000").rstrip("/")

ATTEMPTS = 3
ATTEMPT_TIMEOUT = 0.9
BUDGET = 2.4  # seconds per /quote request, all attempts and waits included
SLEEP_BASE, SLEEP_CAP = 0.05, 0.4
BREAKER_THRESHOLD, BREAKER_COOLDOWN = 5, 20.0
HEALTH_TIMEOUT, HEALTH_CACHE_TTL = 0.5, 1.0
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
BUCKETS = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 5.0]


def log(level, event, **fields):
    now = datetime.now(timezone.utc)
    record = {
        "ts": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "level": level,
        "event": event,
        **fields,
    }
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()


class Breaker:
    """closed --5 failures--> open --20 s--> half_open --probe ok--> closed (probe fails: open again)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.state, self.failures, self.opened_at = "closed", 0, 0.0

    def try_acquire(self):
        with self.lock:
            if self.state == "closed":
                return True
            if self.state == "open" and time.monotonic() - self.opened_at >= BREAKER_COOLDOWN:
                self.state = "half_open"  # this caller carries the probe; others keep waiting
                return True
            return False

    def on_success(self):
        with self.lock:
            self.state, self.failures = "closed", 0

    def on_failure(self):
        with self.lock:
            self.failures += 1
            if self.state == "half_open" or self.failures >= BREAKER_THRESHOLD:
                self.state, self.opened_at = "open", time.monotonic()


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_status, self.errors = {}, 0
        self.bucket_counts, self.total, self.count = [0] * len(BUCKETS), 0.0, 0

    def quote_answered(self, status, seconds):
        with self.lock:
            self.by_status[status] = self.by_status.get(status, 0) + 1
            self.bucket_counts = [n + (seconds <= b) for n, b in zip(self.bucket_counts, BUCKETS)]
            self.total += seconds
            self.count += 1

    def upstream_error(self):
        with self.lock:
            self.errors += 1

    def exposition(self):
        with self.lock:
            lines = [
                "# HELP quote_requests_total Answers to /quote, by HTTP status.",
                "# TYPE quote_requests_total counter",
            ]
            lines += [f'quote_requests_total{{status="{s}"}} {n}' for s, n in sorted(self.by_status.items())]
            lines += [
                "# HELP quote_request_duration_seconds Time to answer /quote.",
                "# TYPE quote_request_duration_seconds histogram",
            ]
            lines += [
                f'quote_request_duration_seconds_bucket{{le="{b}"}} {n}' for b, n in zip(BUCKETS, self.bucket_counts)
            ]
            lines += [
                f'quote_request_duration_seconds_bucket{{le="+Inf"}} {self.count}',
                f"quote_request_duration_seconds_sum {self.total:.6f}",
                f"quote_request_duration_seconds_count {self.count}",
                "# HELP upstream_errors_total Failed upstream attempts (5xx, timeouts, bad data...).",
                "# TYPE upstream_errors_total counter",
                f"upstream_errors_total {self.errors}",
            ]
        return "\n".join(lines) + "\n"


breaker, metrics = Breaker(), Metrics()
cache, cache_lock = {}, threading.Lock()
health_memo = {"at": -1e9, "result": None}
health_lock = threading.Lock()


class Failed(Exception):
    """One failed upstream attempt; `transient` failures are worth retrying."""

    def __init__(self, why, transient):
        super().__init__(why)
        self.transient = transient


def attempt(sku, rid, timeout):
    req = Request(f"{UPSTREAM_URL}/price?{urlencode({'sku': sku})}", headers={"X-Request-ID": rid})
    try:
        with urlopen(req, timeout=timeout) as resp:
            raw = resp.read(1 << 16)
    except HTTPError as err:
        err.close()
        raise Failed(f"HTTP {err.code}", transient=err.code >= 500) from None
    except (OSError, HTTPException) as err:
        raise Failed(repr(err), transient=True) from None
    try:
        price = json.loads(raw)["price"]
    except (ValueError, TypeError, KeyError):
        raise Failed("no price in the upstream answer", transient=False) from None
    if type(price) not in (int, float) or not math.isfinite(price) or price < 0:
        raise Failed(f"unusable price {price!r}", transient=False)
    return price


def lookup(sku, rid):
    deadline = time.monotonic() + BUDGET
    sleep, tries, why = SLEEP_BASE, 0, "breaker open"
    while tries < ATTEMPTS:
        remaining = deadline - time.monotonic()
        if remaining < 0.05 or not breaker.try_acquire():
            break
        tries += 1
        try:
            price = attempt(sku, rid, min(ATTEMPT_TIMEOUT, remaining))
        except Failed as exc:
            breaker.on_failure()
            metrics.upstream_error()
            why = str(exc)
            if not exc.transient or tries == ATTEMPTS:
                break
            # Decorrelated jitter: each sleep is drawn between the base and three times the previous one,
            # capped, so consecutive sleeps are not tied to a fixed schedule.
            sleep = min(SLEEP_CAP, random.uniform(SLEEP_BASE, sleep * 3))
            time.sleep(max(0.0, min(sleep, deadline - time.monotonic())))
            continue
        breaker.on_success()
        amount = round(price * 1.2, 2)
        with cache_lock:
            cache[sku] = amount
        return 200, {"sku": sku, "price": amount, "currency": "EUR", "source": "live"}, tries, why
    with cache_lock:
        amount = cache.get(sku)
    if amount is None:
        return 503, {"error": "upstream unavailable", "sku": sku}, tries, why
    return 200, {"sku": sku, "price": amount, "currency": "EUR", "source": "cache"}, tries, why


def health(rid):
    """Probe the upstream directly (not through the breaker); reuse the answer for one second."""
    with health_lock:
        if time.monotonic() - health_memo["at"] < HEALTH_CACHE_TTL:
            return health_memo["result"]
        try:
            with urlopen(
                Request(f"{UPSTREAM_URL}/price?sku=__health__", headers={"X-Request-ID": rid}), timeout=HEALTH_TIMEOUT
            ) as resp:
                resp.read(1 << 16)
            result = (True, "ok")
        except HTTPError as err:
            err.close()
            result = (err.code < 500, f"HTTP {err.code}")
        except (OSError, HTTPException) as err:
            result = (False, repr(err))
        health_memo.update(at=time.monotonic(), result=result)
        return result


def app(environ, start_response):
    t0 = time.monotonic()
    rid = environ.get("HTTP_X_REQUEST_ID", "")
    if not REQUEST_ID_RE.match(rid):
        rid = uuid.uuid4().hex
    path = environ.get("PATH_INFO", "/")
    ctype, extra = "application/json", {}
    try:
        if path == "/quote":
            sku = parse_qs(environ.get("QUERY_STRING", "")).get("sku", [""])[0]
            if sku:
                status, doc, tries, why = lookup(sku, rid)
                extra = {"sku": sku, "source": doc.get("source"), "upstream_attempts": tries}
                if doc.get("source") != "live":
                    extra["reason"] = why
            else:
                status, doc = 400, {"error": "missing sku"}
            metrics.quote_answered(str(status), time.monotonic() - t0)
            body = json.dumps(doc)
        elif path == "/health":
            ok, why = health(rid)
            status, body = (200, '{"status": "ok"}') if ok else (503, json.dumps({"status": "down", "reason": why}))
        elif path == "/metrics":
            status, body, ctype = 200, metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8"
        else:
            status, body = 404, '{"error": "not found"}'
    except Exception as exc:  # still answer, and still write the one log line
        print(f"unhandled error: {exc!r}", file=sys.stderr)
        status, body, ctype = 500, '{"error": "internal error"}', "application/json"
    log(
        "info" if status < 500 else "warning",
        "request",
        request_id=rid,
        method=environ.get("REQUEST_METHOD"),
        path=path,
        status=status,
        duration_ms=round((time.monotonic() - t0) * 1000, 1),
        **extra,
    )
    payload = body.encode()
    start_response(
        f"{status} {REASONS.get(status, 'Unknown')}",
        [("Content-Type", ctype), ("Content-Length", str(len(payload))), ("X-Request-ID", rid)],
    )
    return [payload]


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog; the default 5 makes bursts wait for a SYN retry


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass  # app() writes the JSON access line


if __name__ == "__main__":
    with make_server("127.0.0.1", PORT, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler) as srv:
        log("info", "startup", port=PORT, upstream=UPSTREAM_URL, breaker_cooldown_s=BREAKER_COOLDOWN)
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            log("info", "shutdown")
