"""Regrades with a preview: a changed grader run over every learner's newest revision, then applied or discarded.
Mounted by config/urls.py at the site's root; instructors of the lab's course only, 404 for everyone else."""

from django.urls import path

from labs.regrades import views

app_name = "regrades"

urlpatterns = [
    path("courses/<slug:course_slug>/labs/<slug:lab_slug>/regrades/", views.lab_regrades, name="lab"),
    path("regrades/<int:regrade_id>/", views.regrade_detail, name="detail"),
    path("regrades/<int:regrade_id>/progress/", views.regrade_progress_fragment, name="progress"),
    path("regrades/<int:regrade_id>/cancel/", views.regrade_cancel_view, name="cancel"),
    path("regrades/<int:regrade_id>/apply/", views.regrade_apply_view, name="apply"),
    path("regrades/<int:regrade_id>/discard/", views.regrade_discard_view, name="discard"),
]
