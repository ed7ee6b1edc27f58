from django.contrib import admin
from django.urls import include, path

from config import health, metrics, throttle

# The admin's login counts failed logins like the site's (config/throttle.py) and answers 429 once refused.
admin.site.login_form = throttle.AdminLoginForm

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/login/", throttle.with_throttle_status(admin.site.login)),
    path("admin/", admin.site.urls),
    path("accounts/", include("courses.account_urls")),
    path("accounts/", include("courses.password_urls")),
    path("review/", include("labs.reviews.urls")),
    path("notifications/", include("notifications.urls")),
    path("", include("kernels.urls")),
    path("", include("labs.gradebook.urls")),
    path("", include("labs.regrades.urls")),
    path("", include("labs.urls")),
    path("", include("courses.urls")),
]

handler404 = "config.errors.not_found"
