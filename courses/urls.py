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
        "courses/<slug:course_slug>/<slug:unit_slug>/<slug:lesson_slug>/quiz/<slug:quiz_key>/",
        views.quiz_submit,
        name="quiz-submit",
    ),
]
