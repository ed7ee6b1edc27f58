"""Quote service: socketserver.ThreadingMixIn + BaseHTTPRequestHandler, logging module with JSON output.

stdout gets exactly one JSON access line per request; stderr gets JSON debug lines for every upstream
attempt and every breaker transition.

Run: PORT=8000 UPSTREAM_URL=http://127.0.0.1:9000 python service.py
"""

import json
import logging
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
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from urllib.error import HTTPError
from urllib.parse import parse_qs, quote, urlsplit
from urllib.request import Request, urlopen

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

PORT = int(os.environ.get("PORT", "8000"))
UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9000").rstrip("/")

MAX_ATTEMPTS = 3
ATTEMPT_TIMEOUT_S = 0.8
REQUEST_DEADLINE_S = 2.5
BACKOFF_BASE_S = 0.1
JITTER_SPREAD = 0.25  # each wait is base * 2**n, give or take 25 %
BREAKER_THRESHOLD = 5
BREAKER_COOLDOWN_S = 5.5
HEALTH_TIMEOUT_S = 0.5


class JsonFormatter(logging.Formatter):
    def format(self, record):
        ts = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
        doc = {"ts": ts.replace("+00:00", "Z"), "level": record.levelname.lower(), "event": record.getMessage()}
        doc.update(getattr(record, "fields", {}))
        return json.dumps(doc)


def make_logger(name, stream, level):
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


access_log = make_logger("quote.access", sys.stdout, logging.INFO)
debug_log = make_logger("quote.upstream", sys.stderr, logging.DEBUG)

prometheus_client.disable_created_metrics()
QUOTES = Counter("quote_requests_total", "Answers to /quote by HTTP status", ["status"])
QUOTE_SECONDS = Histogram("quote_request_duration_seconds", "Time to answer /quote",
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 5.0))
UPSTREAM_ERRORS = Counter("upstream_errors_total", "Failed upstream attempts of any kind")


class Breaker:
    """Opens after BREAKER_THRESHOLD consecutive failures; once the cool-down is over it resets completely."""

    def __init__(self, threshold, cooldown_s):
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self.failures, self.open_until = 0, None
        self.lock = threading.Lock()

    def allows_call(self):
        with self.lock:
            if self.open_until is None:
                return True
            if time.monotonic() < self.open_until:
                return False
            self.failures, self.open_until = 0, None  # full reset: closed again, count from zero
        debug_log.info("breaker reset", extra={"fields": {"state": "closed"}})
        return True

    def success(self):
        with self.lock:
            self.failures = 0

    def failure(self):
        with self.lock:
            self.failures += 1
            opened = self.open_until is None and self.failures >= self.threshold
            if opened:
                self.open_until = time.monotonic() + self.cooldown_s
        if opened:
            debug_log.warning("breaker opened", extra={"fields": {"state": "open", "cooldown_s": self.cooldown_s}})


breaker = Breaker(BREAKER_THRESHOLD, BREAKER_COOLDOWN_S)
last_prices = {}


class BadAnswer(Exception):
    pass


def read_price(payload):
    doc = json.loads(payload)  # ValueError for HTML and other non-JSON
    price = doc.get("price") if isinstance(doc, dict) else None
    if isinstance(price, bool) or not isinstance(price, (int, float)):
        raise BadAnswer(f"price {price!r} is not a number")
    if math.isnan(price) or math.isinf(price) or price < 0:
        raise BadAnswer(f"price {price!r} is not a valid amount")
    return price


def backoff(attempt):
    return BACKOFF_BASE_S * 2**attempt * random.uniform(1 - JITTER_SPREAD, 1 + JITTER_SPREAD)


def fetch_price(sku, request_id):
    """Up to MAX_ATTEMPTS calls inside the request deadline. Returns (price or None, attempts made)."""
    deadline = time.monotonic() + REQUEST_DEADLINE_S
    url = f"{UPSTREAM_URL}/price?sku={quote(sku, safe='')}"
    made = 0
    for attempt in range(MAX_ATTEMPTS):
        remaining = deadline - time.monotonic()
        if remaining < 0.05 or not breaker.allows_call():
            break
        made += 1
        fields = {"request_id": request_id, "sku": sku, "attempt": made}
        started = time.monotonic()
        retry = True
        try:
            with urlopen(Request(url, headers={"X-Request-ID": request_id}),
                         timeout=min(ATTEMPT_TIMEOUT_S, remaining)) as resp:
                price = read_price(resp.read(65536))
            breaker.success()
            debug_log.debug("upstream attempt ok", extra={"fields": {
                **fields, "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}})
            return price, made
        except HTTPError as exc:
            exc.close()
            error, retry = f"HTTP {exc.code}", exc.code >= 500  # a 4xx will not change on a retry
        except (OSError, HTTPException, ValueError, BadAnswer) as exc:
            error = f"{type(exc).__name__}: {exc}"
        breaker.failure()
        UPSTREAM_ERRORS.inc()
        debug_log.debug("upstream attempt failed", extra={"fields": {
            **fields, "error": error, "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}})
        if not retry or attempt == MAX_ATTEMPTS - 1:
            break
        time.sleep(max(0.0, min(backoff(attempt), deadline - time.monotonic())))
    return None, made


def probe_upstream(request_id):
    try:
        req = Request(f"{UPSTREAM_URL}/price?sku=health", headers={"X-Request-ID": request_id})
        with urlopen(req, timeout=HEALTH_TIMEOUT_S):
            return True
    except HTTPError as exc:
        exc.close()
        return exc.code < 500
    except (OSError, HTTPException):
        return False


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        t0 = time.monotonic()
        rid = self.headers.get("X-Request-ID") or ""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", rid):
            rid = uuid.uuid4().hex
        path, _, query = self.path.partition("?")
        fields = {}
        try:
            status, ctype, body, fields = self.route(path, query, rid)
        except Exception:
            debug_log.exception("unhandled error", extra={"fields": {"request_id": rid}})
            status, ctype, body = 500, "application/json", {"error": "internal error"}
        if path == "/quote":
            QUOTES.labels(status=str(status)).inc()
            QUOTE_SECONDS.observe(time.monotonic() - t0)
        access_log.info("request", extra={"fields": {
            "request_id": rid, "method": "GET", "path": path, "status": status,
            "duration_ms": round((time.monotonic() - t0) * 1000, 2), **fields}})
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Request-ID", rid)
        self.end_headers()
        self.wfile.write(payload)

    def route(self, path, query, rid):
        if path == "/quote":
            status, body, fields = self.quote(parse_qs(query).get("sku", [""])[0], rid)
            return status, "application/json", body, fields
        if path == "/health":
            if probe_upstream(rid):
                return 200, "application/json", {"status": "ok"}, {}
            return 503, "application/json", {"status": "error", "detail": "upstream unreachable"}, {}
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(), {}
        return 404, "application/json", {"error": f"no route for {urlsplit(self.path).path}"}, {}

    def quote(self, sku, rid):
        if not sku:
            return 400, {"error": "sku is required"}, {}
        price, attempts = fetch_price(sku, rid)
        if price is not None:
            last_prices[sku] = round(price * 1.2, 2)
            return 200, {"sku": sku, "price": last_prices[sku], "currency": "EUR", "source": "live"}, {
                "source": "live", "upstream_attempts": attempts}
        if sku in last_prices:
            return 200, {"sku": sku, "price": last_prices[sku], "currency": "EUR", "source": "cache"}, {
                "source": "cache", "upstream_attempts": attempts}
        return 503, {"error": "upstream unavailable", "sku": sku}, {"source": None, "upstream_attempts": attempts}


class ThreadedHTTPServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog: socketserver's default of 5 is too small for a burst


def main():
    server = ThreadedHTTPServer(("127.0.0.1", PORT), Handler)
    access_log.info("startup", extra={"fields": {"port": PORT, "upstream": UPSTREAM_URL}})
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        access_log.info("shutdown")


if __name__ == "__main__":
    main()
