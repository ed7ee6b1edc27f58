"""The code cells' JSON endpoints. Thin: look up, check access, call a service or a selector, answer.

Transport: short polling. A Run answers at once with an execution id; the page then asks for the items after the
ones it has (GET …/executions/<id>/?after=N) every 60 to 500 ms. No web worker waits for a kernel.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from courses.models import Lesson
from kernels import protocol, selectors, services
from kernels.errors import CellRefused, KernelServiceError
from kernels.permissions import can_run_code

logger = logging.getLogger(__name__)

_EXECUTION_ID = re.compile(r"[0-9a-f]{32}")


def _refusal(code: str, message: str, *, status: int) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


def _json_api(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Login, then the two error families as JSON: the learner's (their status) and ours (503, logged)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if not request.user.is_authenticated:
            return _refusal("login", "Log in to run code.", status=401)
        try:
            return view(request, *args, **kwargs)
        except CellRefused as refused:
            return _refusal(refused.code, refused.message, status=refused.status)
        except (KernelServiceError, redis.RedisError) as exc:
            logger.warning("code cells: %s", exc)
            return _refusal(
                "unavailable",
                "The service that runs code cannot be reached right now. Try again in a moment.",
                status=503,
            )

    return never_cache(wrapper)


def _lesson(request: HttpRequest, lesson_id: int) -> Lesson:
    lesson = Lesson.objects.filter(pk=lesson_id).only("id", "code_cells").first()
    if lesson is None or not can_run_code(user=request.user, lesson=lesson):
        raise CellRefused("not_found", "This page has no code cells you can run.", status=404)
    return lesson


def _started(execution_id: str) -> JsonResponse:
    poll = reverse("kernels:execution", args=[execution_id])
    return JsonResponse({"execution": execution_id, "poll": poll}, status=202)


@require_GET
@_json_api
def kernel_detail(request: HttpRequest, lesson_id: int) -> JsonResponse:
    lesson = _lesson(request, lesson_id)
    state = selectors.kernel_state(client=protocol.redis_client(), user_id=request.user.pk, lesson_id=lesson.id)
    cells = [{"index": i, "check": cell.get("check") or ""} for i, cell in enumerate(lesson.code_cells)]
    return JsonResponse({"kernel": {"state": state.state, "message": state.message}, "cells": cells})


@require_POST
@_json_api
def cell_run(request: HttpRequest, lesson_id: int, index: int) -> JsonResponse:
    lesson = _lesson(request, lesson_id)
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        raise CellRefused("bad_request", 'Send the code as JSON: {"code": "..."}.', status=400)
    return _started(services.cell_run(user_id=request.user.pk, lesson=lesson, index=index, code=body["code"]))


@require_POST
@_json_api
def kernel_restart(request: HttpRequest, lesson_id: int) -> JsonResponse:
    lesson = _lesson(request, lesson_id)
    return _started(services.kernel_restart(user_id=request.user.pk, lesson=lesson))


@require_POST
@_json_api
def kernel_interrupt(request: HttpRequest, lesson_id: int) -> JsonResponse:
    lesson = _lesson(request, lesson_id)
    services.kernel_interrupt(user_id=request.user.pk, lesson=lesson)
    return JsonResponse({"interrupted": True}, status=202)


@require_POST
@_json_api
def kernel_stop(request: HttpRequest, lesson_id: int) -> JsonResponse:
    lesson = _lesson(request, lesson_id)
    services.kernel_stop(user_id=request.user.pk, lesson=lesson)
    return JsonResponse({"stopped": True}, status=202)


@require_GET
@_json_api
def execution_detail(request: HttpRequest, execution_id: str) -> JsonResponse:
    if not _EXECUTION_ID.fullmatch(execution_id):
        raise CellRefused("not_found", "No such run.", status=404)
    after = request.GET.get("after", "0")
    if not after.isdigit():
        raise CellRefused("bad_request", "`after` must be a whole number of items.", status=400)
    read = services.execution_poll(user_id=request.user.pk, execution_id=execution_id, after=int(after))
    if read is None:
        raise CellRefused("not_found", "No such run.", status=404)
    return JsonResponse({"items": read.items, "next": read.next, "done": read.done})
