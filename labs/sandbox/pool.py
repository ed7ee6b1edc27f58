"""A pool of pre-started sandboxes, one per worker process, so a grading does not wait for a container to start.

Who owns it: each Celery pool process (labs.apps starts it on `worker_process_init` when
settings.SANDBOX_POOL_SIZE > 0, and drains it on `worker_process_shutdown`); `./bin/run` and compose start the
same worker, so both get it. A pooled container is created and started exactly as a fresh one
(environment.container_create: the same limits, no network, read-only root, non-root, cap_drop ALL), with two
agents started in it (platform/sandbox/agent.py, one per user) and no submission yet. `Sandbox` claims one when
its limits, image and labels match; the grader's agent then writes the submission into /submission (a tmpfs)
and the grader bundle into /grader, both sent as tars on the agent's stream. Each container serves exactly one
grading and is removed as any sandbox is; the pool never hands one out twice.

Refills run in a background thread with a Docker client of its own. Entries are dropped (and removed) when:
their agent's stream ended (the engine restarted or the container died: an idle agent never writes, so anything
to read means it is gone), they are older than SANDBOX_POOL_MAX_IDLE_SECONDS, or the runner image was rebuilt
(the tag now names another image). Limits: the pool keeps containers for the limits recently asked for (a lab's
own limits), sharing its size between them; a sandbox whose limits, image or labels match no entry starts fresh.
The reaper (labs.sandbox.reaper) removes pool containers whose owner process is gone, or that outlived any use.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass

import docker
from django.conf import settings

from labs.sandbox import environment
from labs.sandbox.agents import AgentConnection
from labs.sandbox.environment import (
    _DOCKER_ERRORS,
    BASE_ENV,
    LIFETIME_MARGIN_S,
    MANAGED_LABEL,
    USERS,
    container_create,
    docker_client,
)
from labs.sandbox.limits import SandboxLimits

logger = logging.getLogger(__name__)

POOL_LABEL = "shipshape.pool"  # "<hostname>:<pid>" of the owner process
DEMAND_TTL_S = 600  # limits nobody asked for in this long get no more containers
IMAGE_CHECK_S = 10  # how often the filler compares the runner image's tag with its entries'
RETRY_MAX_S = 30


@dataclass
class PoolEntry:
    container_id: str
    image_id: str
    limits: SandboxLimits
    claim_by: float  # time.monotonic() after which it is too old to hand out
    learner: AgentConnection
    grader: AgentConnection

    def close(self) -> None:
        self.learner.close()
        self.grader.close()


@dataclass
class PoolStats:
    claimed: int = 0
    missed: int = 0
    created: int = 0
    dropped_stale: int = 0
    dropped_old: int = 0
    dropped_image: int = 0
    fill_errors: int = 0


class SandboxPool:
    def __init__(
        self,
        *,
        size: int,
        max_idle_s: float,
        labels: dict[str, str],
        default_limits: SandboxLimits,
        image: str | None = None,
    ) -> None:
        self.size = size
        self.max_idle_s = max_idle_s
        self.image = image or settings.RUNNER_IMAGE
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.labels = {
            **labels,
            MANAGED_LABEL: "1",
            POOL_LABEL: self.owner,
            "shipshape.revision": "",
            "shipshape.run": "",
        }
        self.stats = PoolStats()
        self._idle: list[PoolEntry] = []
        self._doomed: list[PoolEntry] = []
        self._demand: dict[SandboxLimits, float] = {default_limits: time.monotonic()}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: docker.DockerClient | None = None
        self._image_id = ""
        self._image_checked = 0.0

    # -- what a sandbox calls --------------------------------------------------------------------------------

    def claim(self, *, limits: SandboxLimits, image_id: str, labels: dict[str, str]) -> PoolEntry | None:
        """A pre-started container for these limits, image and labels, taken out of the pool; None when none."""
        if any(self.labels.get(key) != value for key, value in labels.items()):
            return None
        now = time.monotonic()
        found = None
        with self._lock:
            self._demand[limits] = now
            for entry in list(self._idle):
                if entry.limits != limits:
                    continue
                self._idle.remove(entry)
                if not self._unusable(entry, image_id=image_id, now=now):
                    found = entry
                    break
                self._doomed.append(entry)
            if found is None:
                self.stats.missed += 1
            else:
                self.stats.claimed += 1
        self._wake.set()
        return found

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)

    def idle_ids(self) -> list[str]:
        with self._lock:
            return [entry.container_id for entry in self._idle]

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sandbox-pool", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Stop refilling and remove every idle container (claimed ones belong to their sandbox)."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            self._doomed += self._idle
            self._idle = []
        self._remove_doomed()
        if self._client is not None:
            with contextlib.suppress(*_DOCKER_ERRORS):
                self._client.close()

    def fill(self, *, timeout: float = 60) -> bool:
        """Wait until the pool is full (tests and benchmarks); True when it is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle_count() >= self.size:
                return True
            self._wake.set()
            time.sleep(0.05)
        return False

    # -- the filler thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopped.is_set():
            try:
                self._prune()
                self._rebalance()
                while not self._stopped.is_set() and self.idle_count() < self.size:
                    self._fill_one()
                backoff = 1.0
            except Exception as exc:  # the engine is down or restarting: keep trying, slower
                self.stats.fill_errors += 1
                logger.warning("sandbox pool: refill failed (%s); retrying in %.0f s", exc, backoff)
                self._forget_client()
                self._stopped.wait(backoff)
                backoff = min(RETRY_MAX_S, backoff * 2)
            self._remove_doomed()
            self._wake.wait(1.0)
            self._wake.clear()
        self._remove_doomed()

    def _docker(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker_client()
        return self._client

    def _forget_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(*_DOCKER_ERRORS):
                self._client.close()
        self._client = None

    def _current_image_id(self) -> str:
        now = time.monotonic()
        if not self._image_id or now - self._image_checked > IMAGE_CHECK_S:
            self._image_id = self._docker().images.get(self.image).id
            self._image_checked = now
        return self._image_id

    def _prune(self) -> None:
        image_id = self._current_image_id()
        now = time.monotonic()
        with self._lock:
            keep = []
            for entry in self._idle:
                (self._doomed if self._unusable(entry, image_id=image_id, now=now) else keep).append(entry)
            self._idle = keep

    def _unusable(self, entry: PoolEntry, *, image_id: str, now: float) -> bool:
        """True (and counted) when the entry must be dropped: the image was rebuilt, it waited too long, or its
        agents' streams ended (an engine restart or a dead container). Call with the lock held."""
        if entry.image_id != image_id:
            self.stats.dropped_image += 1
        elif entry.claim_by < now:
            self.stats.dropped_old += 1
        elif entry.learner.idle_is_broken() or entry.grader.idle_is_broken():
            self.stats.dropped_stale += 1
        else:
            return False
        return True

    def _shares(self) -> tuple[list[SandboxLimits], int]:
        """The limits asked for recently (most recent first, at most one per slot) and each one's share of the
        pool. Call with the lock held."""
        now = time.monotonic()
        by_recency = sorted(self._demand.items(), key=lambda item: item[1], reverse=True)
        wanted = [limits for limits, when in by_recency if now - when < DEMAND_TTL_S][: self.size]
        wanted = wanted or [by_recency[0][0]]
        return wanted, math.ceil(self.size / len(wanted))

    def _rebalance(self) -> None:
        """Make room for limits below their share: a full pool of one lab's limits would never serve another."""
        with self._lock:
            wanted, share = self._shares()
            counts = {limits: sum(1 for e in self._idle if e.limits == limits) for limits in wanted}
            missing = sum(max(0, share - count) for count in counts.values())
            room = self.size - len(self._idle)
            for entry in list(self._idle):  # oldest first
                if missing <= room:
                    break
                if entry.limits in counts and counts[entry.limits] <= share:
                    continue
                if entry.limits in counts:
                    counts[entry.limits] -= 1
                self._idle.remove(entry)
                self._doomed.append(entry)
                room += 1

    def _wanted_limits(self) -> SandboxLimits:
        """The recently asked-for limits with the fewest idle containers for their share of the pool."""
        with self._lock:
            wanted, share = self._shares()
            counts = {limits: sum(1 for e in self._idle if e.limits == limits) for limits in wanted}
        return next((limits for limits in wanted if counts[limits] < share), wanted[0])

    def _fill_one(self) -> None:
        limits = self._wanted_limits()
        image_id = self._current_image_id()
        api = self._docker().api
        lifetime = self.max_idle_s + limits.wall_seconds + LIFETIME_MARGIN_S
        container_id = container_create(
            api,
            image=self.image,
            limits=limits,
            network_mode="none",
            mounts=[],
            lifetime_s=lifetime,
            labels=dict(self.labels),
            submission_tmpfs=True,
        )
        agents: list[AgentConnection] = []
        try:
            for user in ("learner", "grader"):
                agents.append(
                    AgentConnection.start(api, container_id, user=USERS[user], env=dict(BASE_ENV), sweep=False)
                )
            for agent in agents:  # both answer before the entry is offered
                agent.call({"op": "ping"}, deadline=time.monotonic() + 30, cap=0)
        except BaseException:
            for agent in agents:
                agent.close()
            with contextlib.suppress(*_DOCKER_ERRORS):
                api.remove_container(container_id, force=True, v=True)
            raise
        entry = PoolEntry(
            container_id=container_id,
            image_id=image_id,
            limits=limits,
            claim_by=time.monotonic() + self.max_idle_s,
            learner=agents[0],
            grader=agents[1],
        )
        with self._lock:
            self.stats.created += 1
            if self._stopped.is_set() or len(self._idle) >= self.size:
                self._doomed.append(entry)
            else:
                self._idle.append(entry)

    def _remove_doomed(self) -> None:
        with self._lock:
            doomed, self._doomed = self._doomed, []
        for entry in doomed:
            entry.close()
            try:
                self._docker().api.remove_container(entry.container_id, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except Exception as exc:  # the engine is gone: the reaper removes it later
                logger.info("sandbox pool: could not remove %s (%s)", entry.container_id[:12], exc)
                self._forget_client()


_process_lock = threading.Lock()


def process_pool() -> SandboxPool | None:
    """This process's pool, if one was started here (a forked child never uses its parent's)."""
    return environment.pool_in_use()


def pool_start(
    *,
    default_limits: SandboxLimits,
    labels: dict[str, str],
    size: int | None = None,
    max_idle_s: float | None = None,
) -> SandboxPool | None:
    """Start this process's pool (settings.SANDBOX_POOL_SIZE containers unless `size`); None when the size is 0.

    `default_limits` are filled first, the labs' defaults (a lab's own limits are learned as sandboxes ask for
    them); `labels` are those the sandboxes that may take a pooled container ask for (the database's label)."""
    size = settings.SANDBOX_POOL_SIZE if size is None else size
    if size <= 0:
        return None
    with _process_lock:
        if process_pool() is not None:
            return process_pool()
        pool = SandboxPool(
            size=size,
            max_idle_s=settings.SANDBOX_POOL_MAX_IDLE_SECONDS if max_idle_s is None else max_idle_s,
            labels=dict(labels),
            default_limits=default_limits,
        )
        pool.start()
        environment.pool_use(pool)
        return pool


def pool_stop() -> None:
    """Drain this process's pool (worker shutdown, tests)."""
    with _process_lock:
        pool = process_pool()
        environment.pool_use(None)
    if pool is not None:
        pool.stop()


def pool_owner_gone(label: str) -> bool:
    """True when a pool label names a process of this host that no longer runs (the reaper's test)."""
    host, _, pid = label.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
