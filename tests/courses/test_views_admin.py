import pytest
from django.contrib import admin
from django.urls import reverse

from courses.models import Course, Enrollment, Lesson, LessonProgress, Quiz, QuizAttempt, RenderedMarkdown, Unit
from labs.models import CheckResult, GradingRun, Lab, Revision
from tests.courses import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "model",
    [
        Course,
        Unit,
        Lesson,
        Quiz,
        QuizAttempt,
        Enrollment,
        LessonProgress,
        RenderedMarkdown,
        Lab,
        Revision,
        GradingRun,
        CheckResult,
    ],
)
def test_every_model_has_an_admin_page_for_staff(client, model):
    assert admin.site.is_registered(model)
    factories.course_with_lessons_create()
    staff = factories.user_create(is_staff=True)
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert client.get(url).status_code == 200


def test_grading_records_are_read_only_in_admin(client):
    staff = factories.user_create(is_staff=True)
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    for model in (Revision, GradingRun, CheckResult):
        assert client.get(reverse(f"admin:labs_{model._meta.model_name}_add")).status_code == 403


def test_staff_grant_roles_in_the_enrollment_admin(client):
    course = factories.course_with_lessons_create()
    learner = factories.user_create()
    enrollment = factories.enrollment_create(user=learner, course=course)
    staff = factories.user_create(is_staff=True)
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    url = reverse("admin:courses_enrollment_change", args=[enrollment.pk])
    response = client.post(url, {"user": learner.pk, "course": course.pk, "role": "reviewer"})
    assert response.status_code == 302
    enrollment.refresh_from_db()
    assert enrollment.role == Enrollment.Role.REVIEWER


def test_learners_cannot_reach_the_admin(client):
    client.force_login(factories.user_create())
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
