"""The code cells' HTTP API and who may use it: a learner, an outsider (another learner), an anonymous reader.
No kernel runs here (the manager is not started): what is tested is the web's side of the queue."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from kernels import protocol
from kernels.permissions import can_run_code
from tests.courses.factories import course_create, lesson_create, unit_create, user_create

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

CELLS = [
    {"index": 0, "language": "python", "code": "x = 1", "check": ""},
    {"index": 1, "language": "python", "code": "x", "check": "x == 1"},
]


@pytest.fixture
def lesson():
    unit = unit_create(course=course_create(), position=1)
    return lesson_create(unit=unit, position=1, code_cells=CELLS)


@pytest.fixture
def redis_keys(redis_server):
    client = protocol.redis_client()
    yield client
    for key in client.scan_iter(match=protocol.PREFIX + "*"):
        client.delete(key)


@pytest.fixture
def manager_beat(redis_keys):
    """A kernel manager's beat with room, as a live manager writes it (no manager runs: requests stay queued)."""

    def write(*, kernels: int = 0, capacity: int = 5) -> None:
        beat = {
            "instance": "m1",
            "host": "h",
            "owner": "x:h",
            "kernels": kernels,
            "capacity": capacity,
            "time": time.time(),
        }
        redis_keys.set(protocol.manager_key("m1"), json.dumps(beat), ex=60)

    write()
    return write


def learner_client(user) -> Client:
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    return client


def post_run(client: Client, lesson, *, index: int = 0, code: str = "x = 1"):
    return client.post(
        f"/kernels/lessons/{lesson.id}/cells/{index}/run",
        data=json.dumps({"code": code}),
        content_type="application/json",
    )


def test_it_asks_an_anonymous_reader_to_log_in(lesson, redis_keys):
    response = post_run(Client(), lesson)

    assert response.status_code == 401
    assert response.json() == {"error": "login", "message": "Log in to run code."}


def test_it_queues_a_learners_run_and_answers_with_the_poll_url(lesson, manager_beat, redis_keys):
    learner = user_create()

    response = post_run(learner_client(learner), lesson, index=1, code="x + 1")

    assert response.status_code == 202
    execution = response.json()["execution"]
    assert response.json()["poll"] == f"/kernels/executions/{execution}/"
    [raw] = redis_keys.lrange(protocol.queue_key(), 0, -1)
    request = json.loads(raw)
    assert (request["op"], request["user"], request["lesson"], request["code"]) == (
        "run",
        learner.pk,
        lesson.id,
        "x + 1",
    )
    assert request["check"] == "x == 1"  # from the lesson, never from the page


def test_it_never_shows_a_learners_run_to_another_learner(lesson, manager_beat, redis_keys):
    execution = post_run(learner_client(user_create()), lesson).json()["execution"]
    protocol.items_append(
        client=redis_keys, execution_id=execution, items=[{"type": "stream", "name": "stdout", "text": "secret"}]
    )

    outsider = learner_client(user_create()).get(f"/kernels/executions/{execution}/")

    assert outsider.status_code == 404
    assert "secret" not in outsider.content.decode()


def test_it_returns_the_items_after_the_ones_the_page_has(lesson, manager_beat, redis_keys):
    learner = learner_client(user_create())
    execution = post_run(learner, lesson).json()["execution"]
    items = [
        {"type": "status", "state": "running"},
        {"type": "stream", "name": "stdout", "text": "hi\n"},
        {"type": "done", "status": "ok", "message": None, "check": None, "execution_count": 1},
    ]
    protocol.items_append(client=redis_keys, execution_id=execution, items=items)

    first = learner.get(f"/kernels/executions/{execution}/?after=0").json()
    rest = learner.get(f"/kernels/executions/{execution}/?after=2").json()

    assert first == {"items": items, "next": 3, "done": True}
    assert rest == {"items": items[2:], "next": 3, "done": True}


def test_it_refuses_a_cell_the_lesson_does_not_have(lesson, manager_beat):
    response = post_run(learner_client(user_create()), lesson, index=7)

    assert response.status_code == 404
    assert response.json()["error"] == "no_cell"


def test_it_refuses_code_over_the_size_limit_and_says_the_limit(lesson, manager_beat):
    response = post_run(learner_client(user_create()), lesson, code="x" * 20_001)

    assert response.status_code == 400
    assert response.json()["error"] == "code_too_long"
    assert "20,000" in response.json()["message"]


def test_it_refuses_a_body_that_is_not_json_code(lesson, manager_beat):
    response = learner_client(user_create()).post(
        f"/kernels/lessons/{lesson.id}/cells/0/run", data="code=1", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_it_says_the_code_service_is_down_when_no_manager_beats(lesson, redis_keys):
    response = post_run(learner_client(user_create()), lesson)

    assert response.status_code == 503
    assert response.json()["error"] == "no_service"
    assert redis_keys.llen(protocol.queue_key()) == 0


def test_it_says_every_host_is_full(lesson, manager_beat, redis_keys):
    manager_beat(kernels=5, capacity=5)

    response = post_run(learner_client(user_create()), lesson)

    assert response.status_code == 503
    assert response.json()["error"] == "host_full"
    assert "All 5 kernels" in response.json()["message"]


def test_it_answers_for_a_manager_that_died_holding_the_run(lesson, manager_beat, redis_keys):
    learner = user_create()
    client = learner_client(learner)
    execution = post_run(client, lesson).json()["execution"]
    redis_keys.hset(protocol.execution_key(execution), "instance", "m1")
    redis_keys.delete(protocol.manager_key("m1"))  # its beat ran out

    body = client.get(f"/kernels/executions/{execution}/").json()

    assert body["done"] is True
    assert body["items"][-1]["status"] == "gone"
    assert "Restart the kernel" in body["items"][-1]["message"]


def test_it_tells_a_page_whose_kernel_is_gone_to_restart(lesson, manager_beat, redis_keys):
    learner = user_create()
    key = protocol.session_key(user_id=learner.pk, lesson_id=lesson.id)
    redis_keys.hset(key, mapping={"instance": "m1", "state": "gone", "message": "Stopped after 15 minutes."})
    client = learner_client(learner)

    state = client.get(f"/kernels/lessons/{lesson.id}/").json()
    run = post_run(client, lesson)

    assert state["kernel"] == {"state": "gone", "message": "Stopped after 15 minutes."}
    assert state["cells"] == [{"index": 0, "check": ""}, {"index": 1, "check": "x == 1"}]
    assert run.status_code == 409
    assert run.json() == {"error": "kernel_gone", "message": "Stopped after 15 minutes."}


def test_it_refuses_interrupt_without_a_kernel(lesson, manager_beat):
    response = learner_client(user_create()).post(f"/kernels/lessons/{lesson.id}/interrupt")

    assert response.status_code == 409
    assert response.json()["error"] == "no_kernel"


def test_it_requires_a_csrf_token_on_posts(lesson, manager_beat):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_create())

    response = post_run(client, lesson)

    assert response.status_code == 403


def test_it_hides_a_lesson_without_cells(manager_beat):
    plain = lesson_create(unit=unit_create(course=course_create(), position=1), position=1)

    response = post_run(learner_client(user_create()), plain)

    assert response.status_code == 404


def test_an_anonymous_reader_cannot_run_code(lesson):
    assert not can_run_code(user=AnonymousUser(), lesson=lesson)


def test_an_inactive_learner_cannot_run_code(lesson):
    learner = user_create()
    learner.is_active = False
    assert not can_run_code(user=learner, lesson=lesson)


def test_a_lesson_without_cells_runs_nothing(lesson):
    lesson.code_cells = []
    assert not can_run_code(user=user_create(), lesson=lesson)


def test_a_learner_can_run_a_lessons_cells(lesson):
    assert can_run_code(user=user_create(), lesson=lesson)


def test_it_throttles_runs_past_the_learners_rate_and_says_when_to_try_again(
    lesson, manager_beat, settings, monkeypatch
):
    from config import throttle

    monkeypatch.setattr(throttle, "clock", lambda: 1_000_010.0)  # one window throughout, 10 s before its end
    settings.THROTTLE_CODE_RUNS, settings.THROTTLE_CODE_RUNS_SECONDS = 2, 60
    client = learner_client(user_create())

    statuses = [post_run(client, lesson).status_code for _ in range(3)]
    refused = post_run(client, lesson)

    assert statuses == [202, 202, 429]
    assert refused.json()["error"] == "too_many_runs"
    assert "Try again in 10 seconds" in refused.json()["message"]


def test_the_kernel_manager_refuses_to_run_as_the_learners_uid(monkeypatch):
    import os

    from django.core.management import CommandError, call_command

    monkeypatch.setattr(os, "getuid", lambda: 1000)

    with pytest.raises(CommandError, match="uid 1000"):
        call_command("kernel_manager")


def test_it_answers_failed_for_a_run_a_live_manager_never_answered(lesson, manager_beat, redis_keys):
    learner = user_create()
    client = learner_client(learner)
    execution = post_run(client, lesson).json()["execution"]
    key = protocol.execution_key(execution)
    redis_keys.hset(key, mapping={"instance": "m1", "sent": str(time.time() - 24 * 3600)})  # m1 beats, still

    body = client.get(f"/kernels/executions/{execution}/").json()

    assert body["done"] is True
    assert body["items"][-1]["status"] == "failed"
    assert "Run it again" in body["items"][-1]["message"]


def test_the_manager_drops_its_stale_members_of_a_learners_kernels(redis_keys):
    from kernels.manager import KernelManager

    manager = KernelManager(capacity=1, per_learner=3)
    manager._learners.add(5)
    redis_keys.sadd(protocol.learner_key(5), f"{manager.instance}:77", "another-manager:78")

    manager.learners_reconcile()

    members = redis_keys.smembers(protocol.learner_key(5))
    assert members == {"another-manager:78"}
    assert 5 not in manager._learners
