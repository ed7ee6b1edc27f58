"""What the web and the kernel manager say to each other, through Redis.

The web never talks to a kernel: it writes a request on a queue and reads the output items the manager appends
(see docs/architecture.md, "Code cells"). Keys, all under one prefix:

    manager:<instance>           {"instance", "host", "pid", "started", "time", "kernels", "capacity"}, TTL 3 beats
    queue:<instance>             requests for a kernel that instance holds (run, interrupt, restart)
    queue                        requests any instance may take: a kernel to start
    session:<user>:<lesson>      the learner's kernel on a page: {"instance", "kernel", "state", "message", "time"}
    learner:<user>               set of "<instance>:<lesson>" of the learner's live kernels (the per-learner cap)
    claim:<user>:<lesson>        the manager starting that page's kernel (two managers never start two)
    exec:<id>                    {"user", "lesson", "instance"}: who may read the execution, and who runs it
    out:<id>                     the execution's output items (kernels.outputs), in order, JSON each

A request: {"op": "run" | "restart" | "interrupt", "exec", "user", "lesson", "cell", "code", "check", "sent"}.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from django.conf import settings

PREFIX = "shipshape:kernels:"
BEAT_SECONDS = 2
BEAT_TTL_SECONDS = 3 * BEAT_SECONDS
EXECUTION_TTL_SECONDS = 1800
CLAIM_TTL_SECONDS = 120
SESSION_TTL_SECONDS = 7 * 24 * 3600

# Session states.
STARTING = "starting"
READY = "ready"
GONE = "gone"


def manager_key(instance: str) -> str:
    return f"{PREFIX}manager:{instance}"


def queue_key(instance: str | None = None) -> str:
    return f"{PREFIX}queue:{instance}" if instance else f"{PREFIX}queue"


def session_key(*, user_id: int, lesson_id: int) -> str:
    return f"{PREFIX}session:{user_id}:{lesson_id}"


def claim_key(*, user_id: int, lesson_id: int) -> str:
    return f"{PREFIX}claim:{user_id}:{lesson_id}"


def learner_key(user_id: int) -> str:
    return f"{PREFIX}learner:{user_id}"


def execution_key(execution_id: str) -> str:
    return f"{PREFIX}exec:{execution_id}"


def output_key(execution_id: str) -> str:
    return f"{PREFIX}out:{execution_id}"


def redis_client(*, timeout: float = 2.0) -> redis.Redis:
    """Answers come back as text: every value under these keys is text or JSON."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True
    )


def managers_read(*, client: redis.Redis) -> list[dict[str, Any]]:
    """Every kernel manager with a fresh beat."""
    keys = list(client.scan_iter(match=f"{PREFIX}manager:*", count=100))
    if not keys:
        return []
    beats = []
    for raw in client.mget(keys):
        if raw:
            try:
                beats.append(json.loads(raw))
            except ValueError:
                continue
    return beats


def managers_full(managers: list[dict[str, Any]]) -> bool:
    """No manager among these has room for another kernel."""
    return all(int(m.get("kernels", 0)) >= int(m.get("capacity", 0)) for m in managers)


def managers_capacity(managers: list[dict[str, Any]]) -> int:
    return sum(int(m.get("capacity", 0)) for m in managers)


def manager_alive(*, client: redis.Redis, instance: str) -> bool:
    return bool(instance) and bool(client.exists(manager_key(instance)))


def items_append(*, client: redis.Redis | Any, execution_id: str, items: list[dict[str, Any]]) -> None:
    """Append output items (a pipeline is accepted, so a batch costs one round trip)."""
    if not items:
        return
    key = output_key(execution_id)
    client.rpush(key, *[json.dumps(item, separators=(",", ":")) for item in items])
    client.expire(key, EXECUTION_TTL_SECONDS)


def done_item(
    *, status: str, message: str | None, check: dict[str, Any] | None = None, execution_count: int | None = None
) -> dict[str, Any]:
    """An execution's last item: how it ended (contract: ok, error, interrupted, limit, gone, failed) and why."""
    return {"type": "done", "status": status, "message": message, "check": check, "execution_count": execution_count}


def execution_answered(*, client: redis.Redis, execution_id: str) -> bool:
    """Whether the execution's last item is its "done" (whoever wrote it: its manager, or the web for it)."""
    last = client.lindex(output_key(execution_id), -1)
    if last is None:
        return False
    try:
        return json.loads(last).get("type") == "done"
    except (ValueError, AttributeError):
        return False
