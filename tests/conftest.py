"""Root test fixtures: real Redis, real Docker, the real runner image. Nothing here skips a test: a missing
dependency fails loudly with the command that provides it (./bin/test sets everything up)."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform import session_env

REPO_ROOT = Path(__file__).resolve().parent.parent
_DATA_PATH_SETTINGS = ("SUBMISSIONS_ROOT", "STATIC_ROOT")


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # Hashing passwords the production way dominates the suite's time; tests never need their strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    if session_env.USER_DATA_DIR is not None or not settings.configured:
        return
    old, new = Path(settings.DATA_DIR), session_env.TEST_DATA_DIR
    if old == new:
        return
    # Settings were loaded before this file: never let tests write into the developer's var/.
    for name in _DATA_PATH_SETTINGS:
        value = Path(getattr(settings, name, ""))
        if value.is_relative_to(old):
            setattr(settings, name, new / value.relative_to(old))
    settings.DATA_DIR = new


def pytest_unconfigure(config: pytest.Config) -> None:
    if session_env.USER_DATA_DIR is None:
        shutil.rmtree(session_env.TEST_DATA_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def grading_db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("grading-db") / "test.sqlite3"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(grading_db_path: Path) -> None:
    # Celery workers in the grading tests are other processes: the test database must be a file they can open,
    # not SQLite's :memory:. Defined here, not in tests/labs, because the first database test of the session,
    # wherever it is, decides the test database for all.
    # On PostgreSQL (DATABASE_URL, as ./bin/test's second pass sets it) every process reaches the test database
    # by name already: pytest-django creates test_<name> on that server and drops it at the end.
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(grading_db_path)
    else:
        # A name of its own per session: two test runs on one server (two developers, a run beside a benchmark)
        # would otherwise drop each other's test_<name> database mid-run.
        name = settings.DATABASES["default"]["NAME"]
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_{name}_{os.getpid()}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ProcessGroup:
    """A service the tests start as a subprocess leading its own session (start_new_session=True), so stopping it
    reaches its children too (a Celery worker's pool, say)."""

    process: subprocess.Popen | None = None
    log_file: Path | None = None
    stop_timeout_s: float = 30

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file else ""

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash or an OOM kill of the host would: nothing is cleaned up."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        """SIGTERM (the service's own clean stop), then SIGKILL if it is not done in stop_timeout_s."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass
        self.process = None


class RedisServer:
    """A real redis-server on 127.0.0.1 with an fsync-always append-only file, restartable on the same port and
    data dir so tests can check that nothing queued is lost."""

    def __init__(self, *, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed. Run ./bin/test, which installs it (Debian: redis-server).")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.data_dir / "redis.log"
        self.process = subprocess.Popen(
            [
                *(binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir)),
                *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
                *("--daemonize", "no", "--logfile", str(log_file)),
            ],
            stdin=subprocess.DEVNULL,
        )
        for _ in range(200):
            if self.ping():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        self.stop()
        pytest.fail(f"redis-server did not start on 127.0.0.1:{self.port}. Its log:\n{log}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis flushes the append-only file before exiting
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _celery_broker_use(url: str) -> str | None:
    """Points the project's Celery app at `url`; returns the previous broker URL."""
    from config.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = url
    if app._pool is not None:  # drop connections made to the previous broker
        app._pool.force_close_all()
        app._pool = None
    # The producer pool wraps the connection pool just closed: sending through it would fail with "Acquire on
    # closed pool", so let Celery build a new one on the next send.
    app.amqp._producer_pool = None
    return previous


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real Redis for the session. While it lives, settings.REDIS_URL and the Celery broker point at it."""
    from django.conf import settings

    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis"), port=free_port())
    server.start()
    previous = {name: getattr(settings, name) for name in ("REDIS_URL", "CELERY_BROKER_URL")}
    settings.REDIS_URL = settings.CELERY_BROKER_URL = server.url
    previous_broker = _celery_broker_use(server.url)
    try:
        yield server
    finally:
        _celery_broker_use(previous_broker)
        for name, value in previous.items():
            setattr(settings, name, value)
        server.stop()


@pytest.fixture(scope="session")
def docker_client():
    """A client of the real Docker engine. Fails (never skips) when no engine answers."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        pytest.fail(
            f"No Docker engine answers ({exc}). Run ./bin/test, which starts one "
            "(dockerd --bridge=none --iptables=false)."
        )
    yield client
    client.close()


@pytest.fixture(scope="session")
def runner_image(docker_client) -> str:
    """The image id (sha256:…) of the sandbox runner image."""
    from django.conf import settings
    from docker.errors import ImageNotFound

    try:
        return docker_client.images.get(settings.RUNNER_IMAGE).id
    except ImageNotFound:
        pytest.fail(
            f"The runner image {settings.RUNNER_IMAGE} is missing. Build it with platform/runner-image/build.sh "
            "(./bin/test does)."
        )


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests save screenshots and other files worth keeping after the run (./bin/test sets it)."""
    path = Path(os.environ.get("SHIPSHAPE_ARTIFACTS_DIR", REPO_ROOT / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


# Debian's chromium, headless; the background-networking flags keep it from reaching out of this machine.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    executable = os.environ.get("SHIPSHAPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(executable).exists(), "chromium is missing: run ./bin/test (it installs Debian's chromium)"
    return executable


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A real chromium driven by Playwright (never Playwright's own downloaded browser)."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls in the test body are still plain
    # synchronous code, so Django's async guard is lifted for these tests only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def screenshots(artifacts_dir: Path) -> Path:
    path = artifacts_dir / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
