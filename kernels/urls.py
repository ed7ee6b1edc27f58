from django.urls import path

from kernels import views

app_name = "kernels"

urlpatterns = [
    path("kernels/lessons/<int:lesson_id>/", views.kernel_detail, name="kernel"),
    path("kernels/lessons/<int:lesson_id>/cells/<int:index>/run", views.cell_run, name="run"),
    path("kernels/lessons/<int:lesson_id>/restart", views.kernel_restart, name="restart"),
    path("kernels/lessons/<int:lesson_id>/interrupt", views.kernel_interrupt, name="interrupt"),
    path("kernels/lessons/<int:lesson_id>/stop", views.kernel_stop, name="stop"),
    path("kernels/executions/<str:execution_id>/", views.execution_detail, name="execution"),
]
