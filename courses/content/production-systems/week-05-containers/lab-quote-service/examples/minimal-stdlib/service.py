"""Quote service, standard library only. Run: PORT=8000 UPSTREAM_URL=http://127.0.0.1:9000 python service.py"""

import json
import math
import os
import random
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError
from urllib.parse import parse_qs, quote, urlsplit
from urllib.request import Request, urlopen

PORT = int(os.environ.get("PORT", "8000"))
UPSTREAM = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9000").rstrip("/")
COOLDOWN = 10.0
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 5.0)

lock = threading.Lock()
failures, opened_at, trial = 0, None, False  # circuit breaker
cache = {}  # sku -> last good quoted price
counts, hist, hist_sum, upstream_errors = {}, [0] * (len(BUCKETS) + 1), 0.0, 0


def log(**fields):
    ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    print(json.dumps({"ts": ts, "level": "info", **fields}), flush=True)


def allow():
    global trial
    with lock:
        if opened_at is None:
            return True
        if trial or time.monotonic() - opened_at < COOLDOWN:
            return False
        trial = True  # half-open: one call goes through
        return True


def record(ok):
    global failures, opened_at, trial, upstream_errors
    with lock:
        if ok:
            failures, opened_at, trial = 0, None, False
            return
        upstream_errors += 1
        failures += 1
        if trial or failures >= 5:
            opened_at, trial = time.monotonic(), False


def fetch(sku, rid, timeout):
    """One attempt. Returns (price or None, retry?)."""
    try:
        req = Request(f"{UPSTREAM}/price?sku={quote(sku, safe='')}", headers={"X-Request-ID": rid})
        with urlopen(req, timeout=timeout) as r:
            price = json.loads(r.read()).get("price")
    except HTTPError as e:
        return None, e.code >= 500
    except (ValueError, AttributeError):  # not JSON, or not an object
        return None, False
    except Exception:  # timeout, refused, reset
        return None, True
    if type(price) in (int, float) and math.isfinite(price) and price >= 0:
        return price, False
    return None, False


def get_quote(sku, rid):
    deadline = time.monotonic() + 2.5
    for n in range(3):
        left = deadline - time.monotonic()
        if left < 0.05 or not allow():
            break
        price, retry = fetch(sku, rid, min(1.0, left))
        record(price is not None)
        if price is not None:
            cache[sku] = round(price * 1.2, 2)
            return 200, {"sku": sku, "price": cache[sku], "currency": "EUR", "source": "live"}
        if not retry or n == 2:
            break
        time.sleep(min(0.1 * 2**n + random.uniform(0, 0.05), max(0, deadline - time.monotonic())))
    if sku in cache:
        return 200, {"sku": sku, "price": cache[sku], "currency": "EUR", "source": "cache"}
    return 503, {"error": "upstream unavailable", "sku": sku}


def healthy(rid):
    try:
        urlopen(Request(f"{UPSTREAM}/price?sku=health", headers={"X-Request-ID": rid}), timeout=0.5).close()
        return True
    except HTTPError as e:
        return e.code < 500
    except Exception:
        return False


def metrics_text():
    out = ["# TYPE quote_requests_total counter"]
    out += [f'quote_requests_total{{status="{s}"}} {n}' for s, n in sorted(counts.items())]
    out.append("# TYPE quote_request_duration_seconds histogram")
    cumulative = 0
    for le, n in zip([*map(str, BUCKETS), "+Inf"], hist):
        cumulative += n
        out.append(f'quote_request_duration_seconds_bucket{{le="{le}"}} {cumulative}')
    out += [f"quote_request_duration_seconds_sum {hist_sum}", f"quote_request_duration_seconds_count {cumulative}",
            "# TYPE upstream_errors_total counter", f"upstream_errors_total {upstream_errors}"]
    return "\n".join(out) + "\n"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        global hist_sum
        start = time.monotonic()
        rid = self.headers.get("X-Request-ID", "")
        rid = rid if re.fullmatch(r"[A-Za-z0-9._-]{1,100}", rid) else uuid.uuid4().hex
        url = urlsplit(self.path)
        ctype = "application/json"
        if url.path == "/quote":
            sku = parse_qs(url.query).get("sku", [""])[0]
            status, body = get_quote(sku, rid) if sku else (400, {"error": "sku is required"})
            took = time.monotonic() - start
            with lock:
                counts[str(status)] = counts.get(str(status), 0) + 1
                hist[next((i for i, b in enumerate(BUCKETS) if took <= b), len(BUCKETS))] += 1
                hist_sum += took
        elif url.path == "/health":
            status, body = (200, {"status": "ok"}) if healthy(rid) else (503, {"status": "unreachable"})
        elif url.path == "/metrics":
            status, body, ctype = 200, metrics_text(), "text/plain; version=0.0.4"
        else:
            status, body = 404, {"error": "not found"}
        log(event="request", request_id=rid, path=url.path, status=status,
            duration_ms=round((time.monotonic() - start) * 1000, 1))
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-ID", rid)
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    log(event="startup", port=PORT, upstream=UPSTREAM)
    ThreadingHTTPServer.request_queue_size = 128  # default backlog of 5 drops bursts
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
