from django.urls import path

from courses import views

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("courses/<slug:course_slug>/", views.course_detail, name="course"),
    path("courses/<slug:course_slug>/enroll/", views.course_enroll, name="course-enroll"),
    path("courses/<slug:course_slug>/<slug:unit_slug>/<slug:lesson_slug>/", views.lesson_detail, name="lesson"),
    path(
        "courses/<slug:course_slug>/<slug:unit_slug>/<slug:lesson_slug>/complete/",
        views.lesson_progress_update,
        name="lesson-complete",
    ),
    path(
        "courses/<slug:course_slug>/<slug:unit_slug>/<slug:lesson_slug>/marks/",
        views.lesson_marks_update,
        name="lesson-marks",
    ),
    # Checked in the view (digest, name, extension), so a malformed URL is the site's ordinary 404.
    path("course-assets/<str:sha256>/<str:filename>", views.course_asset, name="course-asset"),
    path(
        "courses/<slug:course_slug>/<slug:unit_slug>/<slug:lesson_slug>/quiz/<slug:quiz_key>/",
        views.quiz_submit,
        name="quiz-submit",
    ),
]
