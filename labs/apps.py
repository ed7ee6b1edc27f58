from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "labs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The courses app reaches labs only through this registration (apps depend one way: labs → courses).
        from celery.signals import worker_process_init, worker_process_shutdown, worker_ready

        from courses.extensions import course_labs_register
        from labs.course_labs import LabsForCourses
        from labs.heartbeat import worker_ready_heartbeat

        course_labs_register(LabsForCourses())
        # Each Celery worker reports its Docker engine and runner image to /readyz (labs/heartbeat.py).
        worker_ready.connect(worker_ready_heartbeat, weak=False, dispatch_uid="shipshape-worker-heartbeat")
        # Each pool process keeps its own pre-started sandboxes (labs/sandbox/pool.py), started after the fork.
        worker_process_init.connect(_worker_pool_start, weak=False, dispatch_uid="shipshape-sandbox-pool-start")
        worker_process_shutdown.connect(_worker_pool_stop, weak=False, dispatch_uid="shipshape-sandbox-pool-stop")


def _worker_pool_start(**_: object) -> None:
    """worker_process_init: a Celery pool process starts its own pool of pre-started sandboxes."""
    import logging

    from labs.labspec import LimitsSpec
    from labs.sandbox.pool import pool_start
    from labs.sandbox.reaper import database_label

    try:
        pool_start(default_limits=LimitsSpec().sandbox_limits(), labels={"shipshape.db": database_label()})
    except Exception:  # grading still works without a pool: every sandbox starts fresh
        logging.getLogger(__name__).exception("sandbox pool: could not start; sandboxes will start when needed")


def _worker_pool_stop(**_: object) -> None:
    """worker_process_shutdown: the idle containers go with the process."""
    from labs.sandbox.pool import pool_stop

    pool_stop()
