"""Quote service starter: it works while the upstream works. Make it survive when it does not.

Run: PORT=8000 UPSTREAM_URL=http://127.0.0.1:9000 python service.py
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from urllib.request import urlopen

PORT = int(os.environ.get("PORT", "8000"))
UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9000").rstrip("/")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path == "/quote":
            sku = parse_qs(parts.query).get("sku", [""])[0]
            # TODO: timeout, retries with backoff and jitter, validation, cache, circuit breaker.
            with urlopen(f"{UPSTREAM_URL}/price?sku={sku}") as resp:
                price = json.loads(resp.read())["price"]
            self.reply(200, {"sku": sku, "price": round(price * 1.2, 2), "currency": "EUR", "source": "live"})
        elif parts.path == "/health":
            self.reply(200, {"status": "ok"})  # TODO: is the upstream really reachable?
        else:
            self.reply(404, {"error": "not found"})
        # TODO: one JSON log line per request, X-Request-ID, /metrics.

    def reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    print(f"listening on {PORT}")
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
