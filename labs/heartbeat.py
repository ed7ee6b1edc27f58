"""Workers tell the web whether they can grade: a heartbeat in Redis every HEARTBEAT_SECONDS.

The web host has no Docker engine, so /readyz learns about the workers' engines and runner images from here.
Each worker's main process (not its pool children) starts one daemon thread on `worker_ready`; the thread pings
the worker's Docker engine, looks up the runner image and writes

    shipshape:heartbeat:<worker hostname> = {"worker", "time",
                                            "docker": {"status", "latency_ms", "engine_id", "engine_name", "error"},
                                            "image": {"name", "present", "id"}}

`engine_id` is the engine's own ID (`docker info`): with workers on several hosts it tells which engine a beat
speaks for, and two workers sharing one engine show the same ID.

with a TTL of three beats, so a worker that dies stops counting within three beats. Why a thread in the main
process rather than a task: with prefork every pool process may be busy with a 15-minute grading, and a task
(from beat or fanned out) would wait behind it and report a healthy worker as gone; the main process is idle
while its children grade. The thread opens its own Redis and Docker clients, so pool children never share them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import docker
import redis
from django.conf import settings

logger = logging.getLogger(__name__)

KEY_PREFIX = "shipshape:heartbeat:"
TTL_BEATS = 3


def heartbeat_ttl_seconds() -> int:
    return settings.HEARTBEAT_SECONDS * TTL_BEATS


def heartbeat_observe(*, worker: str) -> dict[str, Any]:
    """What this host's Docker engine and runner image look like now."""
    beat: dict[str, Any] = {"worker": worker, "time": time.time()}
    started = time.perf_counter()
    client = None
    try:
        client = docker.DockerClient(base_url=settings.DOCKER_HOST, timeout=5)
        info = client.info()
        beat["docker"] = {
            "status": "up",
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "engine_id": str(info.get("ID", "")),
            "engine_name": str(info.get("Name", "")),
        }
        try:
            image = client.images.get(settings.RUNNER_IMAGE)
            beat["image"] = {"name": settings.RUNNER_IMAGE, "present": True, "id": image.id}
        except docker.errors.ImageNotFound:
            beat["image"] = {"name": settings.RUNNER_IMAGE, "present": False, "id": ""}
    except Exception as exc:  # an engine that does not answer, whatever the reason, is down
        beat["docker"] = {
            "status": "down",
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "error": f"{type(exc).__name__}: {exc}"[:300],
        }
        beat["image"] = {"name": settings.RUNNER_IMAGE, "present": False, "id": ""}
    finally:
        if client is not None:
            client.close()
    return beat


def heartbeat_write(*, client: redis.Redis, beat: dict[str, Any]) -> None:
    client.set(KEY_PREFIX + beat["worker"], json.dumps(beat), ex=heartbeat_ttl_seconds())


def heartbeats_read(*, client: redis.Redis) -> list[dict[str, Any]]:
    """Every heartbeat still in Redis (unexpired), parsed; unreadable ones are skipped."""
    keys = sorted(client.scan_iter(match=KEY_PREFIX + "*", count=500))
    beats = []
    for raw in client.mget(keys) if keys else []:
        try:
            beat = json.loads(raw) if raw is not None else None
        except ValueError:
            continue
        if isinstance(beat, dict) and isinstance(beat.get("worker"), str) and isinstance(beat.get("time"), int | float):
            beats.append(beat)
    return beats


def beat_can_grade(beat: dict[str, Any]) -> bool:
    docker_status = (beat.get("docker") or {}).get("status")
    return docker_status == "up" and bool((beat.get("image") or {}).get("present"))


def workers_status(*, beats: list[dict[str, Any]], now: float) -> str:
    """up: every fresh heartbeat can grade; degraded: some fresh one reports Docker down or the image missing;
    down: no fresh heartbeat at all."""
    fresh = [beat for beat in beats if now - beat["time"] <= heartbeat_ttl_seconds()]
    if not fresh:
        return "down"
    return "up" if all(beat_can_grade(beat) for beat in fresh) else "degraded"


def _beat_forever(worker: str, stop: threading.Event) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    while not stop.is_set():
        try:
            heartbeat_write(client=client, beat=heartbeat_observe(worker=worker))
        except Exception:
            logger.exception("writing the worker heartbeat failed")
        stop.wait(settings.HEARTBEAT_SECONDS)


_stop = threading.Event()


def heartbeat_start(*, worker: str) -> threading.Thread:
    """Start the heartbeat thread of this worker process (once, from worker_ready)."""
    thread = threading.Thread(target=_beat_forever, args=(worker, _stop), name="shipshape-heartbeat", daemon=True)
    thread.start()
    return thread


def worker_ready_heartbeat(sender=None, **_: object) -> None:
    """The worker_ready receiver (connected in labs.apps): sender is the worker's consumer."""
    heartbeat_start(worker=getattr(sender, "hostname", "") or "worker")
