"""One learner's Jupyter kernel in a sandbox container, and the host's end of it.

The container is made by the sandbox's own `container_create`, so a kernel has exactly a grading sandbox's lock-down:
no network (`network_mode="none"`), read-only root, every capability dropped, no-new-privileges, the learner's uid,
the memory, CPU and process limits. It runs ipykernel (platform/sandbox/kernel_launcher.py) with IPC transport: its
sockets are files in a folder bind-mounted at /kernel, which is how the manager on the host talks to a kernel that has
no network interface but loopback.

Everything the kernel sends is the learner's data (their code runs in that process and can write anything on its
sockets). The Jupyter client reading those sockets is therefore not in the manager but in a bridge process per kernel
(kernels/bridge.py) under an address-space limit: a flood kills that bridge and this kernel, nothing else. The bridge
parses defensively (kernels.outputs) and caps each run's output; a message that does not deserialize ends the kernel.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from django.conf import settings

from kernels.bridge import MEMORY_ENV
from kernels.protocol import done_item
from labs.sandbox.environment import USERS, container_create
from labs.sandbox.limits import SandboxLimits

logger = logging.getLogger(__name__)

KERNEL_LABEL = "shipshape.kernel"  # <namespace>:<host>: whose manager owns the container
CONTAINER_DIR = "/kernel"
SOCKET_NAME = "k"  # the sockets are /kernel/k-1 … k-5
LIVENESS_SECONDS = 0.5  # how often a quiet execution asks Docker what runs in the kernel's sandbox
INTERRUPT_GRACE_SECONDS = 3.0  # after an interrupt, how long the kernel has to go idle before it is stopped
_SOCKET_PATH_MAX = 100  # AF_UNIX paths are at most 107 bytes


class KernelGone(Exception):
    """The kernel's container is gone or the kernel cannot be talked to; `message` tells the learner why."""

    def __init__(self, message: str, *, status: str = "gone") -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Execution:
    """Per-run state of one cell: what the page gets as the final "done" item."""

    execution_id: str
    interrupted: bool = False
    peak_processes: int = 0


def kernels_root() -> Path:
    return Path(settings.KERNELS_DIR)


def kernel_limits() -> SandboxLimits:
    return SandboxLimits(
        cpus=settings.KERNEL_CPUS,
        memory_mb=settings.KERNEL_MEMORY_MB,
        wall_seconds=settings.KERNEL_CELL_TIMEOUT_SECONDS,
        pids=settings.KERNEL_PIDS,
        output_bytes=1 << 20,
        scratch_mb=settings.KERNEL_SCRATCH_MB,
    )


class KernelSandbox:
    """A kernel container and the bridge on its sockets. One thread drives it (start, execute); `interrupt` and
    `remove` may come from any thread."""

    def __init__(self, *, owner: str, labels: dict[str, str], image: str | None = None) -> None:
        self.kernel_id = secrets.token_hex(6)
        self.owner = owner
        self.labels = {KERNEL_LABEL: owner, **labels}
        self.image = image or settings.RUNNER_IMAGE
        self.limits = kernel_limits()
        self.folder = kernels_root() / owner.replace(":", "-") / self.kernel_id
        self.container_id: str | None = None
        self.bridge: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._api = docker.APIClient(base_url=settings.DOCKER_HOST, timeout=30)
        self._api_lock = threading.Lock()  # the manager's main thread interrupts and removes; one call at a time

    # --- life cycle -------------------------------------------------------------------------------------------

    def start(self, *, timeout_s: float = 20.0) -> float:
        """Start the container and wait for the kernel to answer; the seconds it took. Raises KernelGone."""
        started = time.monotonic()
        key = secrets.token_hex(32)
        socket_base = self.folder / SOCKET_NAME
        if len(str(socket_base)) + 2 > _SOCKET_PATH_MAX:
            raise RuntimeError(
                f"SHIPSHAPE_KERNELS_DIR makes socket paths too long ({socket_base}-1): socket paths are limited "
                f"to {_SOCKET_PATH_MAX} bytes; choose a shorter folder"
            )
        self.folder.mkdir(parents=True)
        # Above the kernel's own folder nobody but the manager may look: the sockets and the connection file (its
        # key) must reach no other host user, nor a container mounting the data directory.
        for parent in (self.folder.parent, self.folder.parent.parent):
            os.chmod(parent, 0o700)
        # Open to the learner only until the kernel has bound its sockets (see below).
        os.chmod(self.folder, 0o777)  # noqa: S103
        info = {
            "transport": "ipc",
            "ip": f"{CONTAINER_DIR}/{SOCKET_NAME}",
            "shell_port": 1,
            "iopub_port": 2,
            "stdin_port": 3,
            "control_port": 4,
            "hb_port": 5,
            "key": key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "python3",
        }
        connection = self.folder / "connection.json"
        connection.write_text(json.dumps(info))
        os.chmod(connection, 0o644)
        mount = docker.types.Mount(target=CONTAINER_DIR, source=str(self.folder), type="bind", read_only=False)
        self.container_id = container_create(
            self._api,
            image=self.image,
            limits=self.limits,
            network_mode="none",
            mounts=[mount],
            lifetime_s=0,
            labels=self.labels,
            command=["python3", "-I", "/opt/shipshape/kernel_launcher.py"],
            user=USERS["learner"],
            init=True,
        )
        deadline = started + timeout_s
        sockets = [self.folder / f"{SOCKET_NAME}-{port}" for port in range(1, 6)]
        while not all(path.exists() for path in sockets):
            if time.monotonic() > deadline:
                raise KernelGone("The kernel did not start in time. Restart the kernel to try again.", status="failed")
            self._raise_if_dead()
            time.sleep(0.02)
        # The sockets exist: from now on the learner's code can neither add files here nor swap a socket.
        os.chmod(self.folder, 0o755)  # noqa: S103  (readable by the manager, writable by nobody but it)
        self._bridge_start()
        self._bridge_send(
            {"op": "connect", "connection": {**info, "ip": str(socket_base)}, "timeout": deadline - time.monotonic()}
        )
        answer = self._bridge_answer(timeout_s=max(1.0, deadline - time.monotonic()) + 2)
        if not answer or not answer.get("ready"):
            self._raise_if_dead()
            raise KernelGone("The kernel did not answer. Restart the kernel to try again.", status="failed")
        return time.monotonic() - started

    def remove(self) -> None:
        """Stop the bridge, remove the container and its folder. Any thread; never raises."""
        if self.bridge is not None:
            with contextlib.suppress(Exception):
                self.bridge.kill()
                self.bridge.wait(timeout=10)
        with self._api_lock:
            if self.container_id:
                with contextlib.suppress(Exception):
                    self._api.remove_container(self.container_id, force=True, v=True)
            shutil.rmtree(self.folder, ignore_errors=True)

    # --- the bridge ---------------------------------------------------------------------------------------------

    def _bridge_start(self) -> None:
        env = {
            **os.environ,
            MEMORY_ENV: str(settings.KERNEL_BRIDGE_MEMORY_MB),
            "MALLOC_ARENA_MAX": "2",  # few malloc arenas: the address-space limit is for messages, not arenas
        }
        self.bridge = subprocess.Popen(
            [sys.executable, "-m", "kernels.bridge"],
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._bridge_read, args=(self.bridge,), daemon=True).start()

    def _bridge_read(self, bridge: subprocess.Popen) -> None:
        assert bridge.stdout is not None
        with contextlib.suppress(Exception):
            for line in bridge.stdout:
                with contextlib.suppress(ValueError):
                    self._lines.put(json.loads(line))
        self._lines.put(None)  # the bridge is gone

    def _bridge_send(self, request: dict[str, Any]) -> None:
        assert self.bridge is not None and self.bridge.stdin is not None
        try:
            self.bridge.stdin.write(json.dumps(request) + "\n")
            self.bridge.stdin.flush()
        except OSError:
            pass  # its end shows as the end of its answers

    def _bridge_answer(self, *, timeout_s: float) -> dict[str, Any] | None:
        try:
            return self._lines.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def bridge_gone_message(self) -> str:
        return (
            f"Your code sent more output at once than the platform takes in (over "
            f"{settings.KERNEL_BRIDGE_MEMORY_MB} MB), so the kernel was stopped and its variables are gone. Print "
            "or display less at a time, then restart the kernel."
        )

    def interrupt(self) -> None:
        """SIGINT to the kernel (Docker's init passes it on): KeyboardInterrupt in the running cell. Any thread."""
        with self._api_lock:
            if self.container_id:
                self._api.kill(self.container_id, signal="SIGINT")

    # --- what happened to it ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._api_lock:
            return self._api.inspect_container(self.container_id)["State"]

    def _raise_if_dead(self, run: Execution | None = None) -> None:
        try:
            state = self.state()
        except docker.errors.NotFound as exc:
            raise KernelGone("The kernel's sandbox was removed. Restart the kernel to go on.") from exc
        if not state.get("Running"):
            message = self.death_message(state, peak_processes=run.peak_processes if run else 0)
            raise KernelGone(message, status="limit" if state.get("OOMKilled") else "gone")

    def _watch(self, run: Execution) -> None:
        """While a cell is quiet: is the kernel alive, and has the code started as many processes as it may?"""
        try:
            processes = self.processes()
        except docker.errors.APIError:
            self._raise_if_dead(run)
            return
        run.peak_processes = max(run.peak_processes, processes)
        if processes >= self.limits.pids - 2:
            raise KernelGone(self.process_limit_message(), status="limit")

    def process_limit_message(self) -> str:
        return (
            f"Your code started as many processes as this kernel allows ({self.limits.pids}), so the kernel was "
            "stopped and its variables are gone. Start fewer processes (no unbounded fork or subprocess loop), "
            "then restart the kernel."
        )

    def death_message(self, state: dict[str, Any], *, peak_processes: int = 0) -> str:
        if state.get("OOMKilled") and peak_processes > 8:
            return (
                f"Your code started many processes ({peak_processes} at the last count; this kernel allows "
                f"{self.limits.pids}) that together used more than {self.limits.memory_mb} MB of memory, the "
                "kernel's limit, so the kernel was stopped and its variables are gone. Start fewer processes, "
                "then restart the kernel."
            )
        if state.get("OOMKilled"):
            return (
                f"Your code used more than {self.limits.memory_mb} MB of memory, this kernel's limit, so the kernel "
                "was stopped and its variables are gone. Use less memory (smaller arrays, fewer copies), then "
                "restart the kernel."
            )
        return f"The kernel stopped (exit code {state.get('ExitCode')}). Restart the kernel to go on."

    def processes(self) -> int:
        """How many processes the container runs now (Docker's init included). Docker's errors propagate."""
        with self._api_lock:
            return len(self._api.top(self.container_id).get("Processes") or [])

    def cpu_seconds(self) -> float:
        """CPU time used so far by the processes running in the container (whole seconds, from `ps` TIME)."""
        with self._api_lock:
            top = self._api.top(self.container_id, ps_args="-o pid,time")
        column = (top.get("Titles") or ["PID", "TIME"]).index("TIME")
        return float(sum(_ps_time_seconds(row[column]) for row in top.get("Processes") or []))

    def process_limit_hit(self) -> bool:
        try:
            return self.processes() >= self.limits.pids - 2
        except docker.errors.APIError:
            return False

    # --- running code -------------------------------------------------------------------------------------------

    def execute(
        self,
        *,
        code: str,
        check: str,
        run: Execution,
        emit: Callable[[list[dict[str, Any]]], None],
        timeout_s: float,
    ) -> dict[str, Any]:
        """Run one cell; `emit` gets output items in batches; returns the "done" item. Raises KernelGone when the
        kernel is unusable afterwards (the caller removes it)."""
        while not self._lines.empty():  # a late answer of an earlier run must not count for this one
            if self._lines.get_nowait() is None:
                self._lines.put(None)
                break
        self._bridge_send({"op": "execute", "code": code, "check": check})
        deadline = time.monotonic() + timeout_s
        last_alive_check = time.monotonic()
        timed_out_at: float | None = None
        while True:
            now = time.monotonic()
            if timed_out_at is None and now > deadline:
                timed_out_at = now
                with contextlib.suppress(docker.errors.APIError):
                    self.interrupt()
            if timed_out_at is not None and now - timed_out_at > INTERRUPT_GRACE_SECONDS:
                raise KernelGone(
                    f"Your code ran longer than {timeout_s:g} s, the limit for one cell, and did not stop when "
                    "interrupted, so the kernel was stopped and its variables are gone. Restart the kernel to go on.",
                    status="limit",
                )
            answer = self._bridge_answer(timeout_s=0.1)
            if answer is None and self.bridge is not None and self.bridge.poll() is not None:
                self._raise_if_dead(run)
                raise KernelGone(self.bridge_gone_message(), status="limit")
            if answer is None:
                if now - last_alive_check >= LIVENESS_SECONDS:
                    last_alive_check = now
                    self._watch(run)
                continue
            if "items" in answer:
                emit(answer["items"])
            elif "reply" in answer:
                return self._done(
                    reply=answer["reply"], run=run, timed_out=timed_out_at is not None, timeout_s=timeout_s
                )
            elif "protocol" in answer:
                self._raise_if_dead(run)
                raise KernelGone(
                    "The kernel sent a message the platform cannot read (did your code write to the kernel's own "
                    "sockets?), so it was stopped. Restart the kernel to go on.",
                    status="limit",
                )
            elif "memory" in answer:
                raise KernelGone(self.bridge_gone_message(), status="limit")

    def _done(
        self, *, reply: dict[str, Any] | None, run: Execution, timed_out: bool, timeout_s: float
    ) -> dict[str, Any]:
        if reply is None:
            # The kernel went idle but its reply never came: ours to answer for, not the learner's code.
            return done_item(status="failed", message="The kernel did not confirm the end of this cell. Run it again.")
        status = reply.get("status")
        done = done_item(
            status=status, message=None, check=reply.get("check"), execution_count=reply.get("execution_count")
        )
        if status != "ok" and reply.get("ename") == "KeyboardInterrupt":
            if timed_out:
                done["status"] = "limit"
                done["message"] = (
                    f"Your code ran longer than {timeout_s:g} s, the limit for one cell, so it was interrupted. "
                    "The kernel and its variables are kept."
                )
            elif run.interrupted:
                done["status"] = "interrupted"
                done["message"] = "Interrupted. The kernel and its variables are kept."
        if status != "ok" and self.process_limit_hit():
            raise KernelGone(self.process_limit_message(), status="limit")
        return done


def _ps_time_seconds(text: str) -> int:
    """`ps`'s TIME, [DD-]HH:MM:SS, in seconds."""
    days, _, clock = text.rpartition("-")
    seconds = 0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds + (int(days) * 86400 if days else 0)
