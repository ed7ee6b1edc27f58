from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "labs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The courses app reaches labs only through this registration (apps depend one way: labs → courses).
        from celery.signals import worker_ready

        from courses.extensions import course_labs_register
        from labs.course_labs import LabsForCourses
        from labs.heartbeat import worker_ready_heartbeat

        course_labs_register(LabsForCourses())
        # Each Celery worker reports its Docker engine and runner image to /readyz (labs/heartbeat.py).
        worker_ready.connect(worker_ready_heartbeat, weak=False, dispatch_uid="shipshape-worker-heartbeat")
