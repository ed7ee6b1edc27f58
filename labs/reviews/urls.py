"""Mounted by config/urls.py under `/review/`."""

from django.urls import path

from labs.reviews import views

app_name = "reviews"

urlpatterns = [
    path("", views.review_queue, name="queue"),
    path("revisions/<int:revision_id>/", views.revision_review, name="revision"),
]
