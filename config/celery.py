import logging
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


# A worker on any host serves its own metrics (SHIPSHAPE_WORKER_METRICS_ADDR; config/metrics.py). In the main
# process once the pool has started, like the heartbeat, so no pool process is forked with the server's thread.
@signals.worker_ready.connect
def _serve_worker_metrics(**_: object) -> None:
    from config.metrics import WorkerMetricsError, worker_metrics_start

    try:
        worker_metrics_start()
    except WorkerMetricsError as exc:
        # Celery logs and swallows a receiver's exceptions; SystemExit is not one of them and stops the worker.
        logging.getLogger(__name__).critical("%s", exc)
        raise SystemExit(1) from exc
