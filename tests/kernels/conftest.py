"""A real kernel manager (`manage.py kernel_manager`) as a subprocess, on the test Redis and the real Docker engine,
and a way to run cells through the same services the pages use."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ProcessGroup

REPO_ROOT = Path(__file__).resolve().parents[2]


class KernelManagerProcess(ProcessGroup):
    stop_timeout_s = 60  # it removes its kernels first

    def __init__(self, *, redis_url: str, log_dir: Path, kernels_dir: Path) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.kernels_dir = kernels_dir
        self.process: subprocess.Popen | None = None
        self.log_file: Path | None = None
        self.starts = 0

    def start(self, *, host: str | None = None, **settings: Any) -> None:
        """Start it with SHIPSHAPE_<NAME> settings (e.g. KERNELS_PER_HOST=1) and wait for its first beat; `host`
        names the host it pretends to be (two managers on one engine stand for two hosts)."""
        from kernels import protocol

        self.starts += 1
        self.log_file = self.log_dir / f"kernel-manager-{self.starts}.log"
        env = dict(os.environ)
        env.update(
            SHIPSHAPE_DEV="1",
            REDIS_URL=self.redis_url,
            SHIPSHAPE_KERNELS_DIR=str(self.kernels_dir),
            PYTHONUNBUFFERED="1",
        )
        env.update({f"SHIPSHAPE_{name}": str(value) for name, value in settings.items()})
        client = protocol.redis_client()
        before = {m["instance"] for m in protocol.managers_read(client=client)}
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "kernel_manager", *(["--host", host] if host else [])],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log_file.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the kernel manager exited at start:\n{self.log()[-3000:]}")
            if {m["instance"] for m in protocol.managers_read(client=client)} - before:
                return
            time.sleep(0.1)
        pytest.fail(f"the kernel manager did not beat:\n{self.log()[-3000:]}")


@pytest.fixture(autouse=True)
def private_run_throttle(settings) -> None:
    """Each test counts its runs in a cache of its own: the runs throttle counts per learner id, and ids repeat
    across tests."""
    from tests.test_throttling import use_private_throttle_cache

    use_private_throttle_cache(settings)


def kernel_containers(docker_client) -> list:
    """This test session's kernel containers (its managers' namespace: other runs on the engine are not ours)."""
    from kernels.manager import namespace
    from kernels.sandbox import KERNEL_LABEL

    mine = namespace() + ":"
    return [
        c
        for c in docker_client.containers.list(all=True, filters={"label": KERNEL_LABEL})
        if c.labels.get(KERNEL_LABEL, "").startswith(mine)
    ]


@pytest.fixture
def second_kernel_manager(kernel_manager, redis_server, tmp_path) -> Iterator[KernelManagerProcess]:
    """Another manager on the same Redis and engine, as a second host's would be (start it with host=...)."""
    manager = KernelManagerProcess(
        redis_url=redis_server.url, log_dir=tmp_path / "second", kernels_dir=kernel_manager.kernels_dir
    )
    manager.log_dir.mkdir()
    yield manager
    manager.stop()


@pytest.fixture
def kernel_manager(redis_server, runner_image, docker_client, tmp_path) -> Iterator[KernelManagerProcess]:
    """A manager of this test's own (start it with the settings the test needs); stopped after, every kernel
    container removed, and the Redis keys of code cells deleted."""
    from django.conf import settings

    from kernels import protocol

    # A short folder: kernel sockets live in it and AF_UNIX paths are short.
    kernels_dir = Path("/tmp") / f"sk-{secrets.token_hex(3)}"
    previous = settings.KERNELS_DIR
    settings.KERNELS_DIR = kernels_dir
    manager = KernelManagerProcess(redis_url=redis_server.url, log_dir=tmp_path, kernels_dir=kernels_dir)
    yield manager
    manager.stop()
    settings.KERNELS_DIR = previous
    for container in kernel_containers(docker_client):
        with contextlib.suppress(Exception):
            container.remove(force=True)
    client = protocol.redis_client()
    for key in client.scan_iter(match=protocol.PREFIX + "*"):
        client.delete(key)
    shutil.rmtree(kernels_dir, ignore_errors=True)


@dataclass
class Page:
    """A lesson page as the services see it: an id and its cells."""

    id: int
    code_cells: list[dict[str, Any]] = field(default_factory=lambda: [{"index": 0, "check": ""}])


@dataclass
class Outcome:
    items: list[dict[str, Any]]

    @property
    def done(self) -> dict[str, Any]:
        return self.items[-1]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [item for item in self.items if item["type"] == kind]

    def stdout(self) -> str:
        return "".join(item["text"] for item in self.of("stream") if item["name"] == "stdout")


def execution_wait(execution_id: str, *, user_id: int, timeout_s: float = 90) -> Outcome:
    """Poll like the page does until the "done" item (a generous deadline: only a hang fails it)."""
    from kernels import services

    items: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        read = services.execution_poll(user_id=user_id, execution_id=execution_id, after=len(items))
        assert read is not None
        items.extend(read.items)
        if read.done:
            return Outcome(items=items)
        time.sleep(0.03)
    pytest.fail(f"no done item within {timeout_s} s: {items}")


def cell_run(page: Page, code: str, *, user_id: int = 1, index: int = 0) -> Outcome:
    from kernels import services

    execution_id = services.cell_run(user_id=user_id, lesson=page, index=index, code=code)
    return execution_wait(execution_id, user_id=user_id)
