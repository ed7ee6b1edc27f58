"""Reads for the code-cell pages: a learner's kernel on a page, an execution's output so far."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from kernels import protocol
from kernels.manager import restarted_message


@dataclass
class KernelState:
    state: str  # none | starting | ready | gone
    message: str | None
    instance: str | None  # the manager holding it, when it is alive


def kernel_state(*, client: redis.Redis, user_id: int, lesson_id: int) -> KernelState:
    record = client.hgetall(protocol.session_key(user_id=user_id, lesson_id=lesson_id))
    if not record:
        return KernelState(state="none", message=None, instance=None)
    if record.get("state") == protocol.GONE:
        return KernelState(state="gone", message=record.get("message") or restarted_message(), instance=None)
    instance = record.get("instance", "")
    if not protocol.manager_alive(client=client, instance=instance):
        return KernelState(state="gone", message=restarted_message(), instance=None)
    return KernelState(state=record.get("state") or protocol.STARTING, message=None, instance=instance)


@dataclass
class ExecutionRead:
    items: list[dict[str, Any]]
    next: int
    done: bool
    instance: str  # who took it ("" while it waits on the shared queue)
    sent: float


def execution_read(*, client: redis.Redis, user_id: int, execution_id: str, after: int) -> ExecutionRead | None:
    """The items after the first `after`; None when there is no such execution for this user."""
    record = client.hgetall(protocol.execution_key(execution_id))
    if not record or record.get("user") != str(user_id):
        return None
    raw = client.lrange(protocol.output_key(execution_id), after, after + 499)
    items = []
    for entry in raw:
        try:
            items.append(json.loads(entry))
        except ValueError:
            continue
    return ExecutionRead(
        items=items,
        next=after + len(raw),
        done=any(item.get("type") == "done" for item in items),
        instance=record.get("instance", ""),
        sent=float(record.get("sent") or 0),
    )
