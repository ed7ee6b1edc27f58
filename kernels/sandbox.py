"""One learner's Jupyter kernel in a sandbox container, and the host's end of it.

The container is made by the sandbox's own `container_create`, so a kernel has exactly a grading sandbox's lock-down:
no network (`network_mode="none"`), read-only root, every capability dropped, no-new-privileges, the learner's uid,
the memory, CPU and process limits. It runs ipykernel (platform/sandbox/kernel_launcher.py) with IPC transport: its
sockets are files in a folder bind-mounted at /kernel, which is how the manager on the host talks to a kernel that has
no network interface but loopback.

Everything the kernel sends is the learner's data (their code runs in that process and can write anything on its
sockets): messages are size-capped by ZeroMQ, parsed defensively (kernels.outputs), and a message that does not
deserialize ends the kernel.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import zmq
from django.conf import settings
from jupyter_client import BlockingKernelClient

from kernels.outputs import OutputBudget, items_from_message
from labs.sandbox.environment import USERS, container_create
from labs.sandbox.limits import SandboxLimits

logger = logging.getLogger(__name__)

KERNEL_LABEL = "shipshape.kernel"  # <namespace>:<host>: whose manager owns the container
CONTAINER_DIR = "/kernel"
SOCKET_NAME = "k"  # the sockets are /kernel/k-1 … k-5
MAX_MESSAGE_BYTES = 16 << 20  # one ZeroMQ message from a kernel; a bigger one is dropped by ZeroMQ itself
FLUSH_SECONDS = 0.05  # output is sent to the page in batches at most this far apart
LIVENESS_SECONDS = 0.5  # how often a quiet execution asks Docker what runs in the kernel's sandbox
INTERRUPT_GRACE_SECONDS = 3.0  # after an interrupt, how long the kernel has to go idle before it is stopped
_SOCKET_PATH_MAX = 100  # AF_UNIX paths are at most 107 bytes

_context: zmq.Context | None = None


def zmq_context() -> zmq.Context:
    """One ZeroMQ context for every kernel client of this process, with the message cap as a default option."""
    global _context
    if _context is None:
        _context = zmq.Context()
        _context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    return _context


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
    items_sent: int = 0
    budget: OutputBudget = field(default_factory=OutputBudget)


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
    """A kernel container and a client on its sockets. Not thread-safe: one thread drives it, except `interrupt`
    and `remove`, which only call Docker."""

    def __init__(self, *, owner: str, labels: dict[str, str], image: str | None = None) -> None:
        self.kernel_id = secrets.token_hex(6)
        self.owner = owner
        self.labels = {KERNEL_LABEL: owner, **labels}
        self.image = image or settings.RUNNER_IMAGE
        self.limits = kernel_limits()
        self.folder = kernels_root() / owner.replace(":", "-") / self.kernel_id
        self.container_id: str | None = None
        self.client: BlockingKernelClient | None = None
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
        client = BlockingKernelClient(context=zmq_context())
        client.load_connection_info({**info, "ip": str(socket_base)})
        self.client = client
        deadline = started + timeout_s
        sockets = [self.folder / f"{SOCKET_NAME}-{port}" for port in range(1, 6)]
        while not all(path.exists() for path in sockets):
            if time.monotonic() > deadline:
                raise KernelGone("The kernel did not start in time. Restart the kernel to try again.", status="failed")
            self._raise_if_dead()
            time.sleep(0.02)
        # The sockets exist: from now on the learner's code can neither add files here nor swap a socket.
        os.chmod(self.folder, 0o755)  # noqa: S103  (readable by the manager, writable by nobody but it)
        client.start_channels()
        try:
            client.wait_for_ready(timeout=max(1.0, deadline - time.monotonic()))
        except RuntimeError as exc:
            self._raise_if_dead()
            raise KernelGone("The kernel did not answer. Restart the kernel to try again.", status="failed") from exc
        return time.monotonic() - started

    def remove(self) -> None:
        """Close the client, remove the container and its folder. Never raises. Only the thread driving the kernel
        may call it: ZeroMQ sockets must not be closed under another thread's feet (others call container_remove,
        and the driving thread, seeing its kernel gone, closes its client)."""
        self.client_close()
        self.container_remove()

    def client_close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.stop_channels()
            self.client = None

    def container_remove(self) -> None:
        """Remove the container and its folder; any thread. Never raises."""
        with self._api_lock:
            if self.container_id:
                with contextlib.suppress(Exception):
                    self._api.remove_container(self.container_id, force=True, v=True)
            shutil.rmtree(self.folder, ignore_errors=True)

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
            processes = self.processes(strict=True)
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

    def processes(self, *, strict: bool = False) -> int:
        """How many processes the container runs now (Docker's init included); 0 when Docker cannot say, unless
        `strict` (then its error propagates)."""
        try:
            with self._api_lock:
                return len(self._api.top(self.container_id).get("Processes") or [])
        except docker.errors.APIError:
            if strict:
                raise
            return 0

    def process_limit_hit(self) -> bool:
        return self.processes() >= self.limits.pids - 2

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
        assert self.client is not None
        expressions = {"check": check_expression(check)} if check else {}
        msg_id = self.client.execute(
            code, silent=False, store_history=True, user_expressions=expressions, allow_stdin=False
        )
        deadline = time.monotonic() + timeout_s
        pending: list[dict[str, Any]] = []
        last_flush = last_alive_check = time.monotonic()
        timed_out_at: float | None = None
        idle = False
        while not idle:
            now = time.monotonic()
            if timed_out_at is None and now > deadline:
                timed_out_at = now
                with contextlib.suppress(docker.errors.APIError):
                    self.interrupt()
            if timed_out_at is not None and now - timed_out_at > INTERRUPT_GRACE_SECONDS:
                emit(pending)
                raise KernelGone(
                    f"Your code ran longer than {timeout_s:g} s, the limit for one cell, and did not stop when "
                    "interrupted, so the kernel was stopped and its variables are gone. Restart the kernel to go on.",
                    status="limit",
                )
            try:
                msg = self.client.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                msg = None
            except Exception as exc:  # a message that does not deserialize: the learner wrote on the kernel's socket
                emit(pending)
                self._raise_if_dead(run)  # or the kernel is gone (stopped, restarted): then that is what happened
                raise KernelGone(
                    "The kernel sent a message the platform cannot read (did your code write to the kernel's own "
                    "sockets?), so it was stopped. Restart the kernel to go on.",
                    status="limit",
                ) from exc
            if msg is not None and (msg.get("parent_header") or {}).get("msg_id") == msg_id:
                if msg.get("msg_type") == "status" and (msg.get("content") or {}).get("execution_state") == "idle":
                    idle = True
                else:
                    pending.extend(items_from_message(msg, budget=run.budget))
            if pending and (idle or now - last_flush >= FLUSH_SECONDS):
                emit(pending)
                run.items_sent += len(pending)
                pending = []
                last_flush = now
            if msg is None and now - last_alive_check >= LIVENESS_SECONDS:
                last_alive_check = now
                self._watch(run)
        reply = self._reply(msg_id)
        return self._done(reply=reply, run=run, check=check, timed_out=timed_out_at is not None, timeout_s=timeout_s)

    def _reply(self, msg_id: str) -> dict[str, Any]:
        assert self.client is not None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                msg = self.client.get_shell_msg(timeout=0.5)
            except queue.Empty:
                self._raise_if_dead()
                continue
            if (msg.get("parent_header") or {}).get("msg_id") == msg_id:
                content = msg.get("content")
                return content if isinstance(content, dict) else {}
        return {}

    def _done(
        self, *, reply: dict[str, Any], run: Execution, check: str, timed_out: bool, timeout_s: float
    ) -> dict[str, Any]:
        status = reply.get("status") if reply.get("status") in ("ok", "error", "aborted") else "error"
        count = reply.get("execution_count") if isinstance(reply.get("execution_count"), int) else None
        done: dict[str, Any] = {"type": "done", "status": status, "message": None, "check": None}
        done["execution_count"] = count
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
        if check:
            done["check"] = _check_result(reply)
        return done


def check_expression(check: str) -> str:
    """The check as the kernel evaluates it: true or false, also when it compares arrays (numpy's `==` gives one
    answer per element, and `bool()` of that raises): then every element must be true."""
    return (
        "__import__('builtins').bool((lambda value: value.all() if callable(getattr(value, 'all', None)) "
        f"else value)(({check})))"
    )


def _check_result(reply: dict[str, Any]) -> dict[str, Any]:
    if reply.get("status") != "ok":
        return {"passed": False, "detail": "the cell stopped with an error, so the check did not run"}
    result = (reply.get("user_expressions") or {}).get("check")
    if not isinstance(result, dict):
        return {"passed": False, "detail": "the check did not run"}
    if result.get("status") != "ok":
        ename, evalue = str(result.get("ename", ""))[:200], str(result.get("evalue", ""))[:300]
        return {"passed": False, "detail": f"the check raised {ename}: {evalue}"}
    text = ((result.get("data") or {}) if isinstance(result.get("data"), dict) else {}).get("text/plain")
    if text == "True":
        return {"passed": True, "detail": "the check is true"}
    return {"passed": False, "detail": "the check is false"}
