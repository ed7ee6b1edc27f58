from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "labs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The courses app reaches labs only through this registration (apps depend one way: labs → courses).
        from courses.extensions import course_labs_register
        from labs.course_labs import LabsForCourses

        course_labs_register(LabsForCourses())
