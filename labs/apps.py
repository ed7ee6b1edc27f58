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
        from labs.sandbox.pool import worker_pool_start, worker_pool_stop

        course_labs_register(LabsForCourses())
        # Each Celery worker reports its Docker engine and runner image to /readyz (labs/heartbeat.py).
        worker_ready.connect(worker_ready_heartbeat, weak=False, dispatch_uid="shipshape-worker-heartbeat")
        # Each pool process keeps its own pre-started sandboxes (labs/sandbox/pool.py), started after the fork.
        worker_process_init.connect(worker_pool_start, weak=False, dispatch_uid="shipshape-sandbox-pool-start")
        worker_process_shutdown.connect(worker_pool_stop, weak=False, dispatch_uid="shipshape-sandbox-pool-stop")
