"""Instructors: the gradebook, its CSV export, per-lab analytics and grade overrides. Mounted at "" by
config/urls.py, before labs.urls and courses.urls."""

from django.urls import path

from labs.gradebook import views

app_name = "gradebook"

urlpatterns = [
    path("courses/<slug:course_slug>/gradebook/", views.gradebook, name="gradebook"),
    path("courses/<slug:course_slug>/gradebook.csv", views.gradebook_csv, name="csv"),
    path("courses/<slug:course_slug>/labs/<slug:lab_slug>/analytics/", views.lab_analytics, name="analytics"),
    path("courses/<slug:course_slug>/work/<int:work_id>/override/", views.work_override, name="override"),
]
