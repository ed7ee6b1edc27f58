"""Quote service on a hand-written asyncio HTTP/1.1 server (asyncio.start_server), standard library only.

Upstream calls run urllib in a thread pool; the event loop only awaits them.
Run: PORT=8000 UPSTREAM_URL=http://127.0.0.1:9000 python service.py
"""

import asyncio
import json
import math
import os
import random
import re
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from http import HTTPStatus
from http.client import HTTPException
from urllib.error import HTTPError
from urllib.parse import parse_qs, quote, urlsplit
from urllib.request import Request, urlopen

PORT = int(os.environ.get("PORT", "8000"))
UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9000").rstrip("/")

MAX_ATTEMPTS = 3
ATTEMPT_TIMEOUT = 1.0
DEADLINE = 2.5
BACKOFF_BASE = 0.1  # equal jitter: 50-100 ms, then 100-200 ms
FAILURE_THRESHOLD = 5
COOLDOWN = 12.0
HEALTH_TIMEOUT = 0.5
IDLE_TIMEOUT = 15.0  # keep-alive connections with nothing to say are closed
RID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,100}")
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 5.0)

POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="upstream")

# Module-level state. Only the event loop thread touches it, so it needs no lock.
breaker_failures = 0
breaker_opened_at = None
breaker_trial_out = False
last_good = {}
quote_counts = {}  # status string -> answers
duration_buckets = [0] * len(BUCKETS)
duration_sum = 0.0
duration_count = 0
upstream_errors = 0


def log(level, event, stream=sys.stdout, **fields):
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    stream.write(json.dumps({"ts": ts, "level": level, "event": event, **fields}) + "\n")
    stream.flush()



def breaker_allow():
    global breaker_trial_out
    if breaker_opened_at is None:
        return True
    if breaker_trial_out or time.monotonic() - breaker_opened_at < COOLDOWN:
        return False
    breaker_trial_out = True  # half-open: this caller makes the one trial call
    return True


def breaker_success():
    global breaker_failures, breaker_opened_at, breaker_trial_out
    breaker_failures, breaker_opened_at, breaker_trial_out = 0, None, False


def breaker_failure():
    global breaker_failures, breaker_opened_at, breaker_trial_out
    breaker_failures += 1
    if breaker_trial_out or breaker_failures >= FAILURE_THRESHOLD:
        breaker_opened_at, breaker_trial_out = time.monotonic(), False



class AttemptFailed(Exception):
    def __init__(self, reason, retry):
        super().__init__(reason)
        self.retry = retry


def fetch_blocking(url, rid, timeout):
    """Runs in the pool. Returns (status, body); raises OSError/HTTPException on transport errors."""
    try:
        with urlopen(Request(url, headers={"X-Request-ID": rid}), timeout=timeout) as resp:
            return resp.status, resp.read(65536)
    except HTTPError as exc:
        with exc:
            return exc.code, b""


async def fetch(url, rid, timeout):
    loop = asyncio.get_running_loop()
    job = loop.run_in_executor(POOL, fetch_blocking, url, rid, timeout)
    # urllib's timeout is per socket operation; wait_for caps the whole exchange too.
    return await asyncio.wait_for(job, timeout + 0.1)


def valid_price(body):
    try:
        doc = json.loads(body)
    except ValueError:
        raise AttemptFailed("body is not JSON", retry=False) from None
    price = doc.get("price") if isinstance(doc, dict) else None
    if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0:
        raise AttemptFailed(f"invalid price {price!r}", retry=False)
    return float(price)


async def price_attempt(sku, rid, timeout):
    try:
        status, body = await fetch(f"{UPSTREAM_URL}/price?sku={quote(sku, safe='')}", rid, timeout)
    except (OSError, HTTPException, asyncio.TimeoutError) as exc:
        raise AttemptFailed(f"{type(exc).__name__}: {exc}".rstrip(": "), retry=True) from None
    if status != 200:
        raise AttemptFailed(f"upstream answered {status}", retry=status >= 500)
    return valid_price(body)


async def quote_price(sku, rid):
    global upstream_errors
    deadline = time.monotonic() + DEADLINE
    attempts, reason = 0, "circuit open"
    for attempt in range(MAX_ATTEMPTS):
        left = deadline - time.monotonic()
        if left < 0.05 or not breaker_allow():
            break
        attempts += 1
        try:
            price = await price_attempt(sku, rid, min(ATTEMPT_TIMEOUT, left))
        except AttemptFailed as exc:
            breaker_failure()
            upstream_errors += 1
            reason = str(exc)
            log(
                "WARNING",
                "upstream_attempt_failed",
                request_id=rid,
                sku=sku,
                attempt=attempts,
                reason=reason,
                breaker_failures=breaker_failures,
            )
            if not exc.retry or attempt == MAX_ATTEMPTS - 1:
                break
            step = BACKOFF_BASE * 2**attempt
            await asyncio.sleep(min(step / 2 + random.uniform(0, step / 2), max(0.0, deadline - time.monotonic())))
            continue
        breaker_success()
        last_good[sku] = round(price * 1.2, 2)
        return 200, {"sku": sku, "price": last_good[sku], "currency": "EUR", "source": "live"}, attempts
    if sku in last_good:
        return 200, {"sku": sku, "price": last_good[sku], "currency": "EUR", "source": "cache"}, attempts
    return 503, {"error": "upstream unavailable", "sku": sku, "reason": reason}, attempts


async def upstream_health(rid):
    try:
        status, _ = await fetch(f"{UPSTREAM_URL}/price?sku=healthcheck", rid, HEALTH_TIMEOUT)
    except (OSError, HTTPException, asyncio.TimeoutError) as exc:
        return False, type(exc).__name__
    return status < 500, f"upstream answered {status}"



def observe_quote(status, seconds):
    global duration_sum, duration_count
    quote_counts[str(status)] = quote_counts.get(str(status), 0) + 1
    for i, bound in enumerate(BUCKETS):
        duration_buckets[i] += seconds <= bound  # cumulative, as Prometheus expects
    duration_sum += seconds
    duration_count += 1


def render_metrics():
    out = ["# HELP quote_requests_total Answers to /quote by HTTP status.", "# TYPE quote_requests_total counter"]
    out += [f'quote_requests_total{{status="{s}"}} {n}' for s, n in sorted(quote_counts.items())]
    out += [
        "# HELP quote_request_duration_seconds Time to answer /quote.",
        "# TYPE quote_request_duration_seconds histogram",
    ]
    out += [f'quote_request_duration_seconds_bucket{{le="{b}"}} {n}' for b, n in zip(BUCKETS, duration_buckets)]
    out += [
        f'quote_request_duration_seconds_bucket{{le="+Inf"}} {duration_count}',
        f"quote_request_duration_seconds_sum {duration_sum}",
        f"quote_request_duration_seconds_count {duration_count}",
        "# HELP upstream_errors_total Failed upstream attempts, any cause.",
        "# TYPE upstream_errors_total counter",
        f"upstream_errors_total {upstream_errors}",
    ]
    return ("\n".join(out) + "\n").encode()



async def route(method, target, rid):
    """Return (status, content_type, body, log fields)."""
    url = urlsplit(target)
    if method != "GET":
        return 405, "application/json", b'{"error": "method not allowed"}', {}
    if url.path == "/quote":
        sku = parse_qs(url.query).get("sku", [""])[0]
        if not sku:
            return 400, "application/json", b'{"error": "sku is required"}', {}
        status, doc, attempts = await quote_price(sku, rid)
        return (
            status,
            "application/json",
            json.dumps(doc).encode(),
            {"source": doc.get("source", "none"), "upstream_attempts": attempts},
        )
    if url.path == "/health":
        ok, why = await upstream_health(rid)
        doc = {"status": "ok"} if ok else {"status": "unavailable", "reason": why}
        return (200 if ok else 503), "application/json", json.dumps(doc).encode(), {}
    if url.path == "/metrics":
        return 200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(), {}
    return 404, "application/json", b'{"error": "not found"}', {}


async def handle_connection(reader, writer):
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
                return
            started = time.monotonic()
            lines = head.decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ")
            except ValueError:
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if int(headers.get("content-length") or 0) > 0:
                await reader.readexactly(int(headers["content-length"]))
            rid = headers.get("x-request-id", "")
            if not RID_PATTERN.fullmatch(rid):
                rid = uuid.uuid4().hex
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"

            try:
                status, ctype, body, extra = await route(method, target, rid)
            except Exception as exc:  # a bug must still produce an answer and a log line
                log("ERROR", "unhandled_error", stream=sys.stderr, request_id=rid, error=repr(exc))
                status, ctype, body, extra = 500, "application/json", b'{"error": "internal error"}', {}
            path = urlsplit(target).path
            if path == "/quote":
                observe_quote(status, time.monotonic() - started)
            # Log first: once the caller has its answer the line is already on stdout.
            log(
                "INFO" if status < 500 else "ERROR",
                "request",
                request_id=rid,
                method=method,
                path=path,
                status=status,
                duration_ms=round((time.monotonic() - started) * 1000, 2),
                **extra,
            )
            writer.write(
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nX-Request-ID: {rid}\r\n"
                f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n".encode("latin-1")
                + body
            )
            try:
                await writer.drain()
            except ConnectionError:
                return
            if not keep_alive:
                return
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle_connection, "127.0.0.1", PORT)
    log("INFO", "startup", port=PORT, upstream=UPSTREAM_URL, cooldown_s=COOLDOWN)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        log("INFO", "shutdown")
