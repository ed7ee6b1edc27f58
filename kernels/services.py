"""Writes for code cells: every request a page makes goes through here onto a kernel manager's queue.

The web never waits for a kernel: it checks what it can (the cell exists, the code is not too long, the learner and
the hosts are under their caps), records who owns the execution, queues the request and answers at once; the page
then polls the execution's output (kernels.selectors.execution_read).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

import redis
from django.conf import settings

from config.throttle import Throttle, wait_phrase
from courses.models import Lesson
from kernels import protocol
from kernels.errors import CellRefused, KernelServiceError
from kernels.manager import (
    failed_message,
    host_full_message,
    learner_cap_message,
    learner_kernels,
    restarted_message,
)
from kernels.selectors import ExecutionRead, execution_read, kernel_state

logger = logging.getLogger(__name__)

CODE_RUNS = Throttle("code-run", "THROTTLE_CODE_RUNS", "THROTTLE_CODE_RUNS_SECONDS")

CODE_MAX_CHARS = 20_000
# A request nobody took in this long, with no manager alive, is answered for the manager.
UNTAKEN_SECONDS = 10


def cell_run(*, user_id: int, lesson: Lesson, index: int, code: str) -> str:
    """Queue one cell's code on the learner's kernel for this page (starting one if needed); the execution id."""
    cells = lesson.code_cells or []
    if not 0 <= index < len(cells):
        raise CellRefused("no_cell", "This page has no such code cell. Reload the page.", status=404)
    if len(code) > CODE_MAX_CHARS:
        raise CellRefused(
            "code_too_long",
            f"This cell has {len(code):,} characters; a cell may have at most {CODE_MAX_CHARS:,}. Shorten it.",
            status=400,
        )
    runs_throttle(user_id=user_id)
    request = {"op": "run", "code": code, "check": cells[index].get("check") or "", "cell": index}
    return _send(user_id=user_id, lesson_id=lesson.id, request=request, gone_refuses=True)


def kernel_restart(*, user_id: int, lesson: Lesson) -> str:
    """A new kernel for this page (the old one, if any, is stopped); the execution that reports it ready."""
    runs_throttle(user_id=user_id)
    return _send(user_id=user_id, lesson_id=lesson.id, request={"op": "restart"}, gone_refuses=False)


def kernel_interrupt(*, user_id: int, lesson: Lesson) -> None:
    _send_to_live(user_id=user_id, lesson_id=lesson.id, op="interrupt")


def kernel_stop(*, user_id: int, lesson: Lesson) -> None:
    _send_to_live(user_id=user_id, lesson_id=lesson.id, op="stop")


def _send_to_live(*, user_id: int, lesson_id: int, op: str) -> None:
    try:
        client = protocol.redis_client()
        state = kernel_state(client=client, user_id=user_id, lesson_id=lesson_id)
        if state.instance is None:
            raise CellRefused("no_kernel", "This page has no running kernel.", status=409)
        request = {"op": op, "user": user_id, "lesson": lesson_id, "exec": "", "sent": time.time()}
        client.rpush(protocol.queue_key(state.instance), json.dumps(request))
    except redis.RedisError as exc:
        raise _unavailable(exc) from exc


def _send(*, user_id: int, lesson_id: int, request: dict[str, Any], gone_refuses: bool) -> str:
    execution_id = secrets.token_hex(16)
    try:
        client = protocol.redis_client()
        state = kernel_state(client=client, user_id=user_id, lesson_id=lesson_id)
        if state.state == "gone" and gone_refuses:
            raise CellRefused("kernel_gone", state.message or restarted_message(), status=409)
        instance = state.instance or ""
        if not instance:
            _capacity_check(client=client, user_id=user_id)
        request = {**request, "exec": execution_id, "user": user_id, "lesson": lesson_id, "sent": time.time()}
        pipe = client.pipeline(transaction=False)
        record_key = protocol.execution_key(execution_id)
        pipe.hset(
            record_key,
            mapping={"user": str(user_id), "lesson": str(lesson_id), "instance": instance, "sent": str(time.time())},
        )
        pipe.expire(record_key, protocol.EXECUTION_TTL_SECONDS)
        pipe.rpush(protocol.queue_key(instance or None), json.dumps(request))
        pipe.execute()
    except redis.RedisError as exc:
        raise _unavailable(exc) from exc
    return execution_id


def _capacity_check(*, client: redis.Redis, user_id: int) -> None:
    """A new kernel is needed: refuse early, with the reason, when no host can start it."""
    managers = protocol.managers_read(client=client)
    if not managers:
        logger.error("code cells: no kernel manager has a fresh beat in Redis")
        raise CellRefused(
            "no_service",
            "The service that runs code is not running right now; we have been told. Try again in a few minutes.",
            status=503,
        )
    if protocol.managers_full(managers):
        raise CellRefused("host_full", host_full_message(protocol.managers_capacity(managers)), status=503)
    if learner_kernels(client=client, user_id=user_id) >= settings.KERNELS_PER_LEARNER:
        raise CellRefused("learner_cap", learner_cap_message(settings.KERNELS_PER_LEARNER), status=429)


def execution_orphan_end(*, client: redis.Redis, execution_id: str, instance: str, sent: float) -> bool:
    """Answer, for the manager, an execution that can no longer finish: its manager is gone, or it waits on the
    shared queue while no manager is alive. True when a "done" item was added."""
    if protocol.execution_answered(client=client, execution_id=execution_id):
        return False
    if instance:
        if protocol.manager_alive(client=client, instance=instance):
            if time.time() - sent < answer_deadline_seconds():
                return False
            # A live manager that never answered (it lost the request to an error it logged): the page must not
            # wait for ever.
            logger.error("code cells: execution %s unanswered after %s s", execution_id, answer_deadline_seconds())
            message, status = failed_message(), "failed"
        else:
            message, status = restarted_message(), "gone"
    else:
        if time.time() - sent < UNTAKEN_SECONDS:
            return False
        managers = protocol.managers_read(client=client)
        if not managers:
            message, status = failed_message(), "failed"
        elif protocol.managers_full(managers):
            # Room ran out between the check and the queue; a manager taking it later drops it (answered).
            message, status = host_full_message(protocol.managers_capacity(managers)), "failed"
        else:
            return False
    protocol.items_append(
        client=client, execution_id=execution_id, items=[protocol.done_item(status=status, message=message)]
    )
    return True


def execution_poll(*, user_id: int, execution_id: str, after: int) -> ExecutionRead | None:
    """The page's poll: the items after the first `after`, answering for a manager that can no longer (see
    execution_orphan_end) when nothing new has come; None when the user has no such execution."""
    client = protocol.redis_client()
    read = execution_read(client=client, user_id=user_id, execution_id=execution_id, after=after)
    if read is None or read.done or read.items:
        return read
    if execution_orphan_end(client=client, execution_id=execution_id, instance=read.instance, sent=read.sent):
        return execution_read(client=client, user_id=user_id, execution_id=execution_id, after=after)
    return read


def answer_deadline_seconds() -> float:
    """The longest an honest answer can take: a kernel's start, then every run allowed to wait before it, each to its
    time limit and the interrupt's grace."""
    per_run = settings.KERNEL_CELL_TIMEOUT_SECONDS + 10
    return settings.KERNEL_START_TIMEOUT_SECONDS + (settings.KERNEL_QUEUED_PER_PAGE + 1) * per_run


def runs_throttle(*, user_id: int) -> None:
    """Runs and restarts per learner per window: a page (or a script) cannot queue work faster than people type."""
    verdict = CODE_RUNS.hit(str(user_id))
    if not verdict.allowed:
        raise CellRefused(
            "too_many_runs",
            f"You ran code {verdict.limit} times in {settings.THROTTLE_CODE_RUNS_SECONDS} s, the most allowed. "
            f"Try again in {wait_phrase(verdict.retry_in_seconds)}.",
            status=429,
        )


def _unavailable(exc: Exception) -> KernelServiceError:
    logger.warning("code cells: Redis: %s", exc)
    return KernelServiceError(f"Redis: {exc}")
