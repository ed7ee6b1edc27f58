"""The kernel manager: the one process per host that owns the learners' kernels (`manage.py kernel_manager`).

It takes requests from Redis (kernels.protocol), runs each kernel's requests in order on a thread of its own, and
appends what the kernel says to the execution's output list, where the page's short polls read it. The main thread
only dispatches, beats, culls and interrupts, so a slow cell never delays another learner.

Restarting it loses the kernels (their state lived in the processes it drove): a new instance removes the containers
an earlier instance on this host left, its beat replaces theirs, and the web tells pages whose kernel belonged to a
gone instance to restart the kernel.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import docker
import redis
from django.conf import settings

from kernels import protocol
from kernels.sandbox import KERNEL_LABEL, Execution, KernelGone, KernelSandbox, kernels_root

INSTANCE_LABEL = "shipshape.kernel.instance"
IDLE_CPU_WINDOW_SECONDS = 30
IDLE_CPU_SHARE = 0.5  # of one CPU, over that window, with no cell running
ORPHAN_SWEEP_SECONDS = 30

logger = logging.getLogger(__name__)


def namespace() -> str:
    """Tells apart managers of different platforms (./bin/run and a test run) sharing one engine and host."""
    return hashlib.sha256(settings.REDIS_URL.encode()).hexdigest()[:8]


def owner_label(*, host: str) -> str:
    return f"{namespace()}:{host}"


def restarted_message() -> str:
    return "The code service restarted, so your kernel stopped and its variables are gone. Restart the kernel to go on."


def idle_message() -> str:
    minutes = max(1, round(settings.KERNEL_IDLE_SECONDS / 60))
    return (
        f"Your kernel was stopped after {minutes} minute{'s' if minutes != 1 else ''} without use, and its "
        "variables with it. Restart the kernel to go on."
    )


@dataclass
class KernelSession:
    """One learner's kernel on one page, and the requests waiting for it."""

    user_id: int
    lesson_id: int
    requests: queue.Queue = field(default_factory=queue.Queue)
    sandbox: KernelSandbox | None = None
    running: Execution | None = None
    last_used: float = field(default_factory=time.monotonic)
    stopped: bool = False
    thread: threading.Thread | None = None
    cpu_sample: tuple[float, float] | None = None  # (monotonic time, the container's CPU seconds) while idle
    starting: bool = True  # until its kernel answered: never idle, whatever the clock says

    @property
    def key(self) -> tuple[int, int]:
        return (self.user_id, self.lesson_id)

    def busy(self) -> bool:
        return self.starting or self.running is not None or not self.requests.empty()


class KernelManager:
    def __init__(self, *, host: str | None = None, capacity: int | None = None, per_learner: int | None = None) -> None:
        self.host = host or socket.gethostname()
        self.instance = uuid.uuid4().hex[:12]
        self.owner = owner_label(host=self.host)
        self.capacity = settings.KERNELS_PER_HOST if capacity is None else capacity
        self.per_learner = settings.KERNELS_PER_LEARNER if per_learner is None else per_learner
        self.sessions: dict[tuple[int, int], KernelSession] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.redis = protocol.redis_client(timeout=5)
        self.started = time.time()
        self._learners: set[int] = set()  # learners this manager has added kernels for (learners_reconcile)

    # --- main loop ----------------------------------------------------------------------------------------------

    def run(self) -> None:
        self.previous_instances_clear()
        self.beat()
        logger.info(
            "kernel manager %s on %s: up to %s kernels, %s per learner",
            self.instance,
            self.host,
            self.capacity,
            self.per_learner,
        )
        last_beat = last_sweep = time.monotonic()
        try:
            while not self.stop_event.is_set():
                try:
                    self.dispatch_one(timeout_s=1)
                except redis.RedisError as exc:
                    # Redis restarting: keep the kernels, try again; the beat comes back with Redis.
                    logger.warning("kernel manager: Redis: %s", exc)
                    self.stop_event.wait(1)
                if time.monotonic() - last_beat >= protocol.BEAT_SECONDS:
                    last_beat = time.monotonic()
                    with contextlib.suppress(redis.RedisError):
                        self.beat()
                        self.learners_reconcile()
                    self.cull()
                if time.monotonic() - last_sweep >= ORPHAN_SWEEP_SECONDS:
                    last_sweep = time.monotonic()
                    with contextlib.suppress(redis.RedisError, docker.errors.DockerException):
                        if removed := self.orphans_remove():
                            logger.info("kernel manager: removed %s kernels of managers that are gone", removed)
        finally:
            self.shutdown()

    def dispatch_one(self, *, timeout_s: float) -> bool:
        queues = [protocol.queue_key(self.instance)]
        if self.count() < self.capacity:
            queues.append(protocol.queue_key())
        popped = self.redis.blpop(queues, timeout=timeout_s)
        if popped is None:
            return False
        request: dict[str, Any] = {}
        try:
            request = json.loads(popped[1])
            self.handle(request)
        except Exception:
            logger.exception("kernel manager: could not handle a request")
            if isinstance(request, dict) and request.get("exec"):
                self.finish(request["exec"], status="failed", message=failed_message())
        return True

    def count(self) -> int:
        with self.lock:
            return len(self.sessions)

    def beat(self) -> None:
        beat = {
            "instance": self.instance,
            "host": self.host,
            "owner": self.owner,
            "pid": os.getpid(),
            "started": self.started,
            "time": time.time(),
            "kernels": self.count(),
            "capacity": self.capacity,
        }
        self.redis.set(protocol.manager_key(self.instance), json.dumps(beat), ex=protocol.BEAT_TTL_SECONDS)

    # --- requests -----------------------------------------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> None:
        op = request.get("op")
        key = (int(request["user"]), int(request["lesson"]))
        execution_id = request.get("exec")
        if execution_id and protocol.execution_answered(client=self.redis, execution_id=execution_id):
            return  # the web answered it while it waited (every host was full, or none was up)
        if execution_id:
            self.redis.hset(protocol.execution_key(execution_id), "instance", self.instance)
        with self.lock:
            session = self.sessions.get(key)
        if op == "interrupt":
            if session is not None and session.sandbox is not None and session.running is not None:
                session.running.interrupted = True
                with contextlib.suppress(docker.errors.APIError):
                    session.sandbox.interrupt()
            return
        if op == "stop":
            if session is not None:
                self.session_stop(
                    session, message="You stopped this kernel. Restart the kernel to run code here again."
                )
            return
        if op == "restart" and session is not None:
            self.session_stop(session, message=None)
            session = None
        if session is None:
            session = self.session_open(key=key, request=request)
            if session is None:
                return
            if op == "restart":
                session.requests.put({**request, "op": "ready"})
                return
        if op == "run" and session.requests.qsize() >= settings.KERNEL_QUEUED_PER_PAGE:
            self.finish(execution_id or "", status="limit", message=queue_full_message())
            return
        session.requests.put(request)

    def session_open(self, *, key: tuple[int, int], request: dict[str, Any]) -> KernelSession | None:
        execution_id = request.get("exec") or ""
        if self.count() >= self.capacity:
            self.finish(execution_id, status="failed", message=host_full_message(self.capacity))
            return None
        user_id, lesson_id = key
        if not self.claim(key=key, request=request):
            return None
        member = f"{self.instance}:{lesson_id}"
        self._learners.add(user_id)
        self.redis.sadd(protocol.learner_key(user_id), member)
        if learner_kernels(client=self.redis, user_id=user_id) > self.per_learner:
            self.redis.srem(protocol.learner_key(user_id), member)
            self.redis.delete(protocol.claim_key(user_id=user_id, lesson_id=lesson_id))
            self.finish(execution_id, status="limit", message=learner_cap_message(self.per_learner))
            return None
        session = KernelSession(user_id=user_id, lesson_id=lesson_id)
        with self.lock:
            self.sessions[key] = session
        self.beat()  # the web reads free room from the beat: say it now, not at the next beat
        self.session_record(session, state=protocol.STARTING, message=None)
        session.thread = threading.Thread(target=self.session_loop, args=(session,), daemon=True, name=f"kernel-{key}")
        session.thread.start()
        return session

    def claim(self, *, key: tuple[int, int], request: dict[str, Any]) -> bool:
        """Take the page for this manager. Two runs sent before a page has a kernel both wait on the shared queue,
        and two managers may take one each: the first to claim starts the kernel, the other forwards its request
        to the first's queue. False when the request was forwarded."""
        claim = protocol.claim_key(user_id=key[0], lesson_id=key[1])
        if self.redis.set(claim, self.instance, nx=True, ex=protocol.CLAIM_TTL_SECONDS):
            return True
        holder = self.redis.get(claim)
        if holder and holder != self.instance and protocol.manager_alive(client=self.redis, instance=holder):
            self.redis.rpush(protocol.queue_key(holder), json.dumps(request))
            return False
        self.redis.set(claim, self.instance, ex=protocol.CLAIM_TTL_SECONDS)
        return True

    def claim_release(self, session: KernelSession) -> None:
        claim = protocol.claim_key(user_id=session.user_id, lesson_id=session.lesson_id)
        with contextlib.suppress(redis.RedisError):
            if self.redis.get(claim) == self.instance:
                self.redis.delete(claim)

    def learners_reconcile(self) -> None:
        """Drop this manager's members of the learners' sets that name no kernel it holds (a Redis error while
        stopping one left it), so a learner is never refused for kernels that do not exist."""
        prefix = f"{self.instance}:"
        for user_id in list(self._learners):
            key = protocol.learner_key(user_id)
            mine = [m for m in self.redis.smembers(key) if m.startswith(prefix)]
            with self.lock:
                held = {lesson for (user, lesson) in self.sessions if user == user_id}
            stale = [m for m in mine if int(m[len(prefix) :]) not in held]
            if stale:
                self.redis.srem(key, *stale)
            if not held:
                self._learners.discard(user_id)

    def session_loop(self, session: KernelSession) -> None:
        sandbox = KernelSandbox(owner=self.owner, labels={INSTANCE_LABEL: self.instance})
        first = session.requests.get()
        if session.stopped or first.get("op") == "stopped":
            return
        if first.get("exec"):
            self.emit(first["exec"], [{"type": "status", "state": "starting"}])
        try:
            session.sandbox = sandbox
            seconds = sandbox.start(timeout_s=settings.KERNEL_START_TIMEOUT_SECONDS)
            logger.info("kernel %s started for user %s lesson %s in %.2f s", sandbox.kernel_id, *session.key, seconds)
        except KernelGone as exc:
            stopped = session.stopped
            self.session_stop(session, message=exc.message)
            sandbox.remove()
            message = stopped_while_running_message() if stopped else exc.message
            self.finish(first.get("exec") or "", status="gone" if stopped else exc.status, message=message)
            return
        except Exception:
            logger.exception("kernel manager: a kernel did not start")
            self.session_stop(session, message=None)
            sandbox.remove()
            self.finish(first.get("exec") or "", status="failed", message=failed_message())
            return
        if session.stopped:
            sandbox.remove()
            self.finish(first.get("exec") or "", status="gone", message=stopped_while_running_message())
            return
        session.starting, session.last_used = False, time.monotonic()
        self.session_record(session, state=protocol.READY, message=None)
        request: dict[str, Any] | None = first
        try:
            while not session.stopped:
                if request is None:
                    try:
                        request = session.requests.get(timeout=0.5)
                    except queue.Empty:
                        continue
                if session.stopped:
                    break
                self.serve(session, request)
                request = None
        finally:
            sandbox.remove()  # the container may be gone already; the bridge too
            if (
                request is not None
                and request.get("exec")
                and not protocol.execution_answered(client=self.redis, execution_id=request["exec"])
            ):
                self.finish(request["exec"], status="gone", message=stopped_while_running_message())

    def serve(self, session: KernelSession, request: dict[str, Any]) -> None:
        execution_id = request.get("exec") or ""
        if request.get("op") == "ready":
            self.finish(execution_id, status="ok", message="A new kernel is ready.")
            return
        if request.get("op") != "run":
            return
        assert session.sandbox is not None
        run = Execution(execution_id=execution_id)
        session.running = run
        session.last_used = time.monotonic()
        self.emit(execution_id, [{"type": "status", "state": "running"}])
        try:
            done = session.sandbox.execute(
                code=str(request.get("code") or ""),
                check=str(request.get("check") or ""),
                run=run,
                emit=lambda items: self.emit(execution_id, items),
                timeout_s=settings.KERNEL_CELL_TIMEOUT_SECONDS,
            )
        except KernelGone as exc:
            if session.stopped:  # restarted or stopped from the page, or culled, while this cell ran
                self.finish(execution_id, status="gone", message=stopped_while_running_message())
                return
            # The page asks for the kernel's state once it reads this "done": the record is written first.
            self.session_stop(session, message=exc.message)
            self.finish(execution_id, status=exc.status, message=exc.message)
            return
        except Exception:
            logger.exception("kernel manager: a cell of user %s lesson %s failed on our side", *session.key)
            self.session_stop(session, message=failed_message())
            self.finish(execution_id, status="failed", message=failed_message())
            return
        finally:
            session.running = None
            session.last_used = time.monotonic()
        self.emit(execution_id, [done])

    # --- stopping -----------------------------------------------------------------------------------------------

    def session_stop(self, session: KernelSession, *, message: str | None) -> None:
        """Remove the kernel; with a message, the page is told why (and to restart), and queued runs get it too.
        Any thread; the first call wins (a restart stops a kernel whose thread then finds it gone)."""
        with self.lock:
            if session.stopped:
                return
            session.stopped = True
            if self.sessions.get(session.key) is session:
                del self.sessions[session.key]
        kernel_id = session.sandbox.kernel_id if session.sandbox else "-"
        logger.info("kernel %s of user %s lesson %s stopped: %s", kernel_id, *session.key, message or "restart")
        if session.sandbox is not None:
            session.sandbox.remove()
        with contextlib.suppress(redis.RedisError):
            self.beat()
            self.redis.srem(protocol.learner_key(session.user_id), f"{self.instance}:{session.lesson_id}")
            if message is not None:
                self.session_record(session, state=protocol.GONE, message=message)
        while True:
            try:
                waiting = session.requests.get_nowait()
            except queue.Empty:
                break
            if waiting.get("exec"):
                self.finish(waiting["exec"], status="gone", message=message or restarted_message())
        session.requests.put({"op": "stopped"})  # wakes its thread if it still waits for its first request
        self.claim_release(session)

    def cull(self) -> None:
        limit = settings.KERNEL_IDLE_SECONDS
        now = time.monotonic()
        with self.lock:
            sessions = list(self.sessions.values())
        for session in sessions:
            if session.busy():
                session.cpu_sample = None
                continue
            if now - session.last_used > limit:
                logger.info("kernel of user %s lesson %s culled after %s s idle", *session.key, limit)
                self.session_stop(session, message=idle_message())
            elif self.burns_cpu_idle(session, now=now):
                logger.info("kernel of user %s lesson %s stopped: busy with no cell running", *session.key)
                self.session_stop(session, message=idle_cpu_message())

    def burns_cpu_idle(self, session: KernelSession, *, now: float) -> bool:
        """Whether code left running after its cell (a thread, a child process) has kept the kernel's CPU busy
        for most of the last IDLE_CPU_WINDOW_SECONDS while no cell ran: the time limit of a cell cannot see it."""
        assert session.sandbox is not None
        if session.cpu_sample is not None and now - session.cpu_sample[0] < IDLE_CPU_WINDOW_SECONDS:
            return False
        try:
            cpu = session.sandbox.cpu_seconds()
        except docker.errors.DockerException:
            return False
        previous, session.cpu_sample = session.cpu_sample, (now, cpu)
        if previous is None:
            return False
        return cpu - previous[1] >= IDLE_CPU_SHARE * (now - previous[0])

    def shutdown(self) -> None:
        with self.lock:
            sessions = list(self.sessions.values())
        for session in sessions:
            self.session_stop(session, message=restarted_message())
        with contextlib.suppress(redis.RedisError):
            self.redis.delete(protocol.manager_key(self.instance))
            self.queue_drain(self.instance)
        logger.info("kernel manager %s stopped; %s kernels removed", self.instance, len(sessions))

    def previous_instances_clear(self) -> None:
        """What an earlier manager on this host left: its containers, folders, beat and queued requests."""
        removed = self.orphans_remove(own=True)
        shutil.rmtree(kernels_root() / self.owner.replace(":", "-"), ignore_errors=True)
        for beat in protocol.managers_read(client=self.redis):
            if beat.get("owner") == self.owner and beat.get("instance") != self.instance:
                self.redis.delete(protocol.manager_key(beat["instance"]))
                self.queue_drain(beat["instance"])
        if removed:
            logger.info("kernel manager: removed %s kernels an earlier manager on %s left", removed, self.host)

    def orphans_remove(self, *, own: bool = False) -> int:
        """Remove kernel containers of this platform on this engine whose manager has no beat: it died, and under
        another host name (a re-created container) it would never come back for them. With `own`, also every one
        labelled with this manager's owner (at start: they are an earlier instance's). How many were removed."""
        live = {beat.get("instance") for beat in protocol.managers_read(client=self.redis)} - {self.instance}
        live.add(self.instance)
        platform = f"{namespace()}:"
        removed = 0
        api = docker.APIClient(base_url=settings.DOCKER_HOST, timeout=30)
        try:
            for container in api.containers(all=True, filters={"label": KERNEL_LABEL}):
                labels = container.get("Labels") or {}
                owner = labels.get(KERNEL_LABEL, "")
                old_enough = time.time() - float(container.get("Created") or 0) > 2 * protocol.BEAT_TTL_SECONDS
                orphan = owner.startswith(platform) and labels.get(INSTANCE_LABEL) not in live and old_enough
                if (own and owner == self.owner) or orphan:
                    with contextlib.suppress(docker.errors.APIError):
                        api.remove_container(container["Id"], force=True, v=True)
                        removed += 1
        finally:
            api.close()
        return removed

    def queue_drain(self, instance: str) -> None:
        while (raw := self.redis.lpop(protocol.queue_key(instance))) is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                request = json.loads(raw)
                if request.get("exec"):
                    self.finish(request["exec"], status="gone", message=restarted_message())

    # --- writing for the page -----------------------------------------------------------------------------------

    def finish(self, execution_id: str, *, status: str, message: str | None) -> None:
        self.emit(execution_id, [protocol.done_item(status=status, message=message)])

    def emit(self, execution_id: str, items: list[dict[str, Any]]) -> None:
        """Append items for the page. A "done" item is retried through a Redis restart: without it the page would
        wait for an answer that never comes."""
        if not execution_id or not items:
            return
        attempts = 20 if items[-1].get("type") == "done" else 1
        for attempt in range(attempts):
            try:
                pipe = self.redis.pipeline(transaction=False)
                protocol.items_append(client=pipe, execution_id=execution_id, items=items)
                pipe.execute()
                return
            except redis.RedisError:
                if attempt + 1 < attempts:
                    time.sleep(0.5)
        logger.warning("kernel manager: %s output items of %s lost to a Redis error", len(items), execution_id)

    def session_record(self, session: KernelSession, *, state: str, message: str | None) -> None:
        record = {
            "instance": self.instance,
            "kernel": session.sandbox.kernel_id if session.sandbox else "",
            "state": state,
            "message": message or "",
            "time": str(time.time()),
        }
        key = protocol.session_key(user_id=session.user_id, lesson_id=session.lesson_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=record)
        pipe.expire(key, protocol.SESSION_TTL_SECONDS)
        pipe.execute()


def learner_kernels(*, client: redis.Redis, user_id: int) -> int:
    """The learner's live kernels, across hosts; members of managers that are gone are dropped on the way."""
    key = protocol.learner_key(user_id)
    members = client.smembers(key)
    alive: dict[str, bool] = {}
    count = 0
    for member in members:
        instance = member.partition(":")[0]
        if instance not in alive:
            alive[instance] = protocol.manager_alive(client=client, instance=instance)
        if alive[instance]:
            count += 1
        else:
            client.srem(key, member)
    return count


def stopped_while_running_message() -> str:
    return "This page's kernel was restarted or stopped before this cell finished. Run it again."


def idle_cpu_message() -> str:
    return (
        "Code you started kept running after its cell had finished (a thread or a process in the background), "
        "using the CPU with no cell running, so the kernel was stopped and its variables are gone. Let each cell "
        "finish its own work, then restart the kernel."
    )


def queue_full_message() -> str:
    return (
        f"{settings.KERNEL_QUEUED_PER_PAGE} runs are already waiting for this page's kernel. Wait for them to finish "
        "(or press Interrupt), then run this cell again."
    )


def host_full_message(capacity: int) -> str:
    return (
        f"All {capacity} kernels this server can run are in use. Try again in a few minutes: idle kernels are "
        "stopped to make room."
    )


def learner_cap_message(limit: int) -> str:
    return (
        f"You already have {limit} kernels running on other pages, the most one learner may have. Open one of "
        "those pages and press Stop kernel, or wait: a kernel stops by itself after a while without use."
    )


def failed_message() -> str:
    return "Something went wrong on our side while running this cell; it was logged. Run it again."
