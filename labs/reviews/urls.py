"""Mounted by config/urls.py under `/review/`."""

from django.urls import path

from labs.reviews import views

app_name = "reviews"

urlpatterns = [
    path("", views.review_queue, name="queue"),
    path("work/<int:work_id>/claim/", views.work_claim, name="claim"),
    path("work/<int:work_id>/release/", views.work_release, name="release"),
    path("revisions/<int:revision_id>/", views.revision_review, name="revision"),
    path("revisions/<int:revision_id>/comments/", views.comment_add, name="comment_add"),
    path("revisions/<int:revision_id>/comments/<int:index>/delete/", views.comment_delete, name="comment_delete"),
    path("<slug:course_slug>/", views.course_queue, name="course_queue"),
]
