"""The preview's HTTP server: Django's threaded development server class on a loopback address only."""

from __future__ import annotations

import errno
import ipaddress

from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

from courses.preview.app import PreviewApp
from courses.preview.pages import CHANGES_PATH

DEFAULT_PORT = 8008
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


class PreviewError(Exception):
    """The preview cannot start; the message says why and what to do."""


class _RequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the base class's name
        # Every open page asks for changes all the time; logging those would drown the author's page loads.
        if CHANGES_PATH not in self.requestline:
            super().log_message(format, *args)


def check_address(address: str) -> None:
    """Only this machine may reach the preview: it shows drafts and the answers of graded quizzes."""
    try:
        loopback = ipaddress.ip_address(address) in {ipaddress.ip_address(a) for a in LOOPBACK_ADDRESSES}
    except ValueError:
        loopback = False
    if not loopback:
        raise PreviewError(
            f"the preview only listens on this machine, not on {address!r}: it shows drafts and graded quiz "
            f"answers. Use --address 127.0.0.1 (the default) or --address ::1; to publish a course, import it"
        )


def preview_server(app: PreviewApp, *, address: str, port: int) -> ThreadedWSGIServer:
    """A server bound to `address`:`port` (0: any free port), ready for `serve_forever()`."""
    check_address(address)
    if not 0 <= port <= 65535:
        raise PreviewError(f"--port {port} is not a port number: use one from 1 to 65535, e.g. --port {DEFAULT_PORT}")
    try:
        server = ThreadedWSGIServer((address, port), _RequestHandler, ipv6=":" in address, allow_reuse_address=True)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PreviewError(
                f"port {port} on {address} is already in use (another preview or server is running): stop it, "
                f"or pass another port, e.g. --port {port + 1 if port < 65535 else DEFAULT_PORT}"
            ) from exc
        raise PreviewError(f"cannot listen on {address} port {port}: {exc.strerror or exc}") from exc
    server.set_app(app)
    return server


def server_url(server: ThreadedWSGIServer) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
