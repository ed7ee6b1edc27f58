"""What benchmarks against a real server share: a throwaway environment, gunicorn started on a free port of
127.0.0.1 and stopped, one GET on a fresh connection, and a logged-in session cookie forged in the database (no
password hashing)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str, cookie: str = "", timeout: float = 120) -> tuple[int, int]:
    """One GET on a fresh connection, reading the whole answer; returns (status, response bytes incl. headers)."""
    extra = f"Cookie: {cookie}\r\n" if cookie else ""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode())
        size, head = 0, b""
        while True:
            chunk = sock.recv(262144)
            if not chunk:
                break
            if len(head) < 12:
                head += chunk[: 12 - len(head)]
            size += len(chunk)
    return int(head[9:12]), size


def wait_ready(port: int, proc: subprocess.Popen, deadline: float = 30.0) -> None:
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited during start-up; run it by hand to see why")
        try:
            if http_get(port, "/healthz", timeout=10)[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer on port {port} within {deadline:.0f} s")


def session_cookie(user) -> str:
    """A session cookie for `user`, made in the database the server reads (Django must be set up)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def server_environment(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a server (and of the benchmark's own Django) on a throwaway data dir and SQLite file."""
    env = dict(os.environ)
    env.update(
        SHIPSHAPE_DEV="1",
        SHIPSHAPE_DEBUG="0",
        SHIPSHAPE_DATA_DIR=str(tmp),
        DATABASE_URL=f"sqlite:///{tmp / 'bench.sqlite3'}",
        DJANGO_SETTINGS_MODULE="config.settings",
        **extra,
    )
    return env


def gunicorn_start(*, port: int, workers: int, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """gunicorn with `workers` sync workers on 127.0.0.1:`port`, once it answers /healthz. Its access logs (JSON
    lines on stdout) are written, then dropped."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "config.wsgi:application",
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers),
            "--log-level", "warning",
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(port, proc)
    except BaseException:
        gunicorn_stop(proc)
        raise
    return proc


def gunicorn_stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
