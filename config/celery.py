import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("shipshape")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# The request id of the upload that queued a grading follows it into the worker's log lines.
@signals.before_task_publish.connect
def _attach_request_id(headers: dict | None = None, **_: object) -> None:
    from config.observability import request_id_var

    if headers is not None and "request_id" not in headers:
        headers["request_id"] = request_id_var.get()


@signals.task_prerun.connect
def _bind_request_id(task=None, **_: object) -> None:
    from config.observability import request_id_var

    request_id = getattr(task.request, "request_id", None) if task is not None else None
    request_id_var.set(request_id if isinstance(request_id, str) and request_id else f"task-{task.request.id}")
