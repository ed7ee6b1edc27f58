"""The request id of the upload that queued a grading follows it into the worker's log lines."""

from types import SimpleNamespace

from config.celery import _attach_request_id, _bind_request_id
from config.observability import request_id_var


def test_it_puts_the_current_request_id_in_the_task_headers():
    token = request_id_var.set("upload-42")
    try:
        headers: dict = {}
        _attach_request_id(headers=headers)
    finally:
        request_id_var.reset(token)

    assert headers["request_id"] == "upload-42"


def test_the_worker_logs_under_the_request_id_it_received():
    task = SimpleNamespace(request=SimpleNamespace(id="t-1", request_id="upload-42"))

    _bind_request_id(task=task)

    assert request_id_var.get() == "upload-42"


def test_a_task_queued_outside_a_request_logs_under_its_own_task_id():
    task = SimpleNamespace(request=SimpleNamespace(id="t-2", request_id=None))

    _bind_request_id(task=task)

    assert request_id_var.get() == "task-t-2"
