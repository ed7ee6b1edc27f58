from django.urls import path

from labs import api, views

urlpatterns = [
    path("courses/<slug:course_slug>/labs/<slug:lab_slug>/", views.lab_detail, name="lab_detail"),
    path("courses/<slug:course_slug>/labs/<slug:lab_slug>/starter.zip", views.lab_starter, name="lab_starter"),
    path("revisions/<int:revision_id>/", views.revision_detail, name="revision_detail"),
    path("revisions/<int:revision_id>/status/", views.revision_status, name="revision_status"),
    path("revisions/<int:revision_id>/grade-again/", views.revision_regrade, name="revision_regrade"),
    path("revisions/<int:old_id>/diff/<int:new_id>/", views.revision_diff, name="revision_diff"),
    path("work/<int:work_id>/", views.work_detail, name="work_detail"),
    path("work/<int:work_id>/diff/", views.work_diff_pick, name="work_diff_pick"),
    path(
        "courses/<slug:course_slug>/labs/<slug:lab_slug>/reveal-hidden/",
        views.lab_reveal_hidden,
        name="lab_reveal_hidden",
    ),
    path("account/tokens/", views.api_tokens, name="api_tokens"),
    path("api/labs/<slug:course_slug>/<slug:lab_slug>/revisions", api.revision_create, name="api_revision_create"),
    path("api/revisions/<int:revision_id>", api.revision_detail, name="api_revision_detail"),
]
