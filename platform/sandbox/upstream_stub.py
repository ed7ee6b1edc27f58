"""A programmable, fault-injecting upstream for resilience labs. Trusted: runs as the grader user.

It serves `GET /price?sku=S` -> {"sku": S, "price": 12.5} unless a scenario says otherwise, and records every
request it receives (monotonic time, method, path, headers) so the grader can count calls and measure gaps.

A scenario is an ordered list of steps; each step answers `count` requests (default 1, "inf" = forever) and
then the next step applies; when the list runs out the stub answers normally again. Step fields:
  {"status": 503}            answer with that status and a JSON error body
  {"delay_ms": 2500}         wait before answering (combines with the other fields)
  {"reset": true}            drop the connection with a TCP reset, no answer
  {"body": "not json"}       answer 200 with this raw body
  {"json": {...}}            answer 200 with this JSON document
  {"price": -1}              answer 200 with this value as the price
  {"down": true}             stop listening: connections are refused until `up` (or the next scenario)

The port stays reserved for the whole life of a Stub, also while it is "down": a socket bound with SO_REUSEPORT
(and without SO_REUSEADDR) holds it, and the listening socket joins it. Linux lets only sockets of the same user
share a port that way, so the learner's service (another uid) can neither bind the port nor listen on it; while
the stub is down connections are refused because nothing listens.

Control requests: a request that carries the header `X-Shipshape-Control` with the stub's `control_token` is
answered 200 `{}` at once, recorded in `control_log()` instead of `log()`, and never consumes a scenario step.
The probe uses them to measure the machine's timing noise (a client with fixed sleeps) in the same sandbox.

Two ways to use it:
- in-process (what probe.py does): `stub = Stub(port); stub.start(); stub.set_scenario([...]); stub.log()`.
  Nothing but the grader's own process can reprogram it.
- standalone: `python upstream_stub.py --port 9100 --control-port 9101` with the control token in the
  environment variable SHIPSHAPE_STUB_TOKEN (never on the command line: other users can read /proc/*/cmdline).
  The control API listens on 127.0.0.1 only and needs the header `X-Control-Token`:
    GET  /log        -> {"now": t, "requests": [...]}
    POST /scenario   body {"steps": [...], "clear_log": bool}
    POST /down, POST /up, POST /clear
Standard library only.
"""

from __future__ import annotations

import argparse
import errno
import hmac
import json
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_PRICE = 12.5
MAX_LOG = 5000
MAX_HEADERS = 20  # per logged request: the request's headers are the learner's text
MAX_HEADER_CHARS = 256
CONTROL_HEADER = "X-Shipshape-Control"


class PortTaken(OSError):
    """The stub's port is bound by someone else (in a sandbox: the learner's service)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # past connections in TIME_WAIT must not stop a re-listen after "down"
    stub: Stub

    def server_bind(self) -> None:
        # Joins the reserving socket (same user, both SO_REUSEPORT); see the module docstring.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A handler thread that could not start (the pids limit) or a client that went away: the request is
        # simply not answered; nothing for the grader's stderr.
        self.stub.errors += 1


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log is the record
        pass

    def do_GET(self) -> None:
        stub = self.server.stub
        step = stub._record_and_take(self)
        if step.get("control"):
            return self._send(200, b"{}")
        if step.get("delay_ms"):
            time.sleep(float(step["delay_ms"]) / 1000)
        if step.get("reset"):
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        parts = urlsplit(self.path)
        if parts.path != "/price":
            return self._send(404, json.dumps({"error": "not found"}).encode())
        sku = (parse_qs(parts.query).get("sku") or [""])[0]
        if "status" in step:
            return self._send(int(step["status"]), json.dumps({"error": "injected failure"}).encode())
        if "body" in step:
            return self._send(200, str(step["body"]).encode())
        if "json" in step:
            return self._send(200, json.dumps(step["json"]).encode())
        price = step.get("price", stub.default_price)
        self._send(200, json.dumps({"sku": sku, "price": price}).encode())

    def _send(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout): that is the behaviour under test, not an error


class Stub:
    """The upstream: a listening server plus the scenario state and the request log."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, price: float = DEFAULT_PRICE) -> None:
        self.host = host
        self.port = port
        # Checks pick a random price per run, so a service cannot pass by hard-coding the answer.
        self.default_price = price
        self._lock = threading.Lock()
        self._steps: list[dict[str, Any]] = []
        self._remaining = 0  # requests left for the current step
        self._log: list[dict[str, Any]] = []
        self._control_log: list[float] = []
        self.control_token = os.urandom(16).hex()
        self.errors = 0  # requests that could not be handled (see _Server.handle_error)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._reserve: socket.socket | None = None

    # lifecycle ------------------------------------------------------------------------------------------
    def reserve(self) -> None:
        """Bind the port for this stub's whole life (see the module docstring); PortTaken if someone has it."""
        if self._reserve is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(exc.errno, f"port {self.port} is already in use") from exc
            raise
        self._reserve = sock

    def start(self) -> None:
        """Listen (reserving the port first if needed)."""
        if self._server is not None:
            return
        self.reserve()
        try:
            server = _Server((self.host, self.port), _UpstreamHandler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(exc.errno, f"port {self.port} is already in use") from exc
            raise
        server.stub = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket: new connections are refused. The port stays reserved (see close)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def close(self) -> None:
        """Stop listening and release the port."""
        self.stop()
        sock, self._reserve = self._reserve, None
        if sock is not None:
            sock.close()

    @property
    def listening(self) -> bool:
        return self._server is not None

    # scenario ---------------------------------------------------------------------------------------------
    def set_scenario(self, steps: list[dict[str, Any]], *, clear_log: bool = False) -> None:
        problems = validate_steps(steps)
        if problems:
            raise ValueError("; ".join(problems))
        with self._lock:
            self._steps = [dict(s) for s in steps]
            self._remaining = _count(self._steps[0]) if self._steps else 0
            if clear_log:
                self._log.clear()
        self._apply_down()

    def _apply_down(self) -> None:
        with self._lock:
            down = bool(self._steps and self._steps[0].get("down"))
        if down:
            self.stop()
        else:
            self.start()

    def _record_and_take(self, handler: BaseHTTPRequestHandler) -> dict[str, Any]:
        now = time.monotonic()
        given = handler.headers.get(CONTROL_HEADER, "")
        if given and hmac.compare_digest(given.encode(), self.control_token.encode()):
            with self._lock:
                if len(self._control_log) < MAX_LOG:
                    self._control_log.append(now)
            return {"control": True}
        headers = {}
        for name, value in list(handler.headers.items())[:MAX_HEADERS]:
            headers[name.lower()[:MAX_HEADER_CHARS]] = value[:MAX_HEADER_CHARS]
        with self._lock:
            if len(self._log) < MAX_LOG:
                self._log.append(
                    {"t": now, "method": handler.command, "path": handler.path[:MAX_HEADER_CHARS], "headers": headers}
                )
            if not self._steps:
                return {}
            step = self._steps[0]
            if self._remaining != -1:
                self._remaining -= 1
                if self._remaining == 0:
                    self._steps.pop(0)
                    self._remaining = _count(self._steps[0]) if self._steps else 0
            return step

    def log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._log]

    def log_count(self) -> int:
        with self._lock:
            return len(self._log)

    def log_since(self, start: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._log[start:]]

    def control_log(self) -> list[float]:
        """Receipt times of control requests (see the module docstring)."""
        with self._lock:
            return list(self._control_log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()


def _count(step: dict[str, Any]) -> int:
    count = step.get("count", 1)
    return -1 if count == "inf" else int(count)


def validate_steps(steps: Any) -> list[str]:
    """Problems with a scenario, each saying what is wrong; empty when it is valid."""
    known = {"status", "delay_ms", "reset", "body", "json", "price", "down", "count"}
    if not isinstance(steps, list):
        return ["a scenario is a list of steps"]
    problems = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            problems.append(f"step {i} must be a mapping, got {step!r}")
            continue
        unknown = set(step) - known
        if unknown:
            problems.append(f"step {i} has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        count = step.get("count", 1)
        if count != "inf" and (not isinstance(count, int) or count < 1):
            problems.append(f'step {i}: count must be a positive integer or "inf", got {count!r}')
    return problems


# standalone mode with a token-protected control API --------------------------------------------------------


def _control_handler(stub: Stub, token: str) -> type[BaseHTTPRequestHandler]:
    class Control(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _authorised(self) -> bool:
            given = self.headers.get("X-Control-Token", "")
            if hmac.compare_digest(given.encode(), token.encode()):
                return True
            self._reply(403, {"error": "missing or wrong X-Control-Token"})
            return False

        def _reply(self, status: int, doc: Any) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if not self._authorised():
                return
            if self.path == "/log":
                return self._reply(200, {"now": time.monotonic(), "requests": stub.log()})
            self._reply(404, {"error": "unknown control path"})

        def do_POST(self) -> None:
            if not self._authorised():
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                doc = json.loads(raw or b"{}")
                if self.path == "/scenario":
                    stub.set_scenario(doc.get("steps", []), clear_log=bool(doc.get("clear_log")))
                elif self.path == "/down":
                    stub.stop()
                elif self.path == "/up":
                    stub.start()
                elif self.path == "/clear":
                    stub.clear_log()
                else:
                    return self._reply(404, {"error": "unknown control path"})
            except (ValueError, AttributeError) as exc:
                return self._reply(400, {"error": str(exc)})
            self._reply(200, {"ok": True, "listening": stub.listening})

    return Control


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--scenario", help="initial scenario as a JSON list of steps")
    args = parser.parse_args(argv)
    token = os.environ.get("SHIPSHAPE_STUB_TOKEN", "")
    if len(token) < 16:
        print("upstream_stub: set SHIPSHAPE_STUB_TOKEN to a random token of 16+ characters", file=sys.stderr)
        return 2
    stub = Stub(args.port)
    stub.start()
    if args.scenario:
        stub.set_scenario(json.loads(args.scenario))
    control = ThreadingHTTPServer(("127.0.0.1", args.control_port), _control_handler(stub, token))
    control.daemon_threads = True
    print(json.dumps({"event": "stub_ready", "port": args.port, "control_port": args.control_port}), flush=True)
    try:
        control.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
