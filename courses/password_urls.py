"""Password change (logged in) and password reset (by email), with Django's own views under /accounts/.

The URL names are Django's defaults, which its views redirect to and its reset email links to. The templates are
config/templates/registration/account_password_*: not Django's default names, which the admin's own password
change pages also render (a template under those names would replace the admin's look there).

Reset emails go through EMAIL_BACKEND (the console in development) and only reach active accounts that have an
email address: signing up does not ask for one, so such accounts ask the course staff instead. The reset form
answers the same whether or not an account matched, so it reveals nothing about who has an account.
"""

from django.contrib.auth import views as auth_views
from django.urls import path

TEMPLATES = "registration/account_password_"

urlpatterns = [
    path(
        "password/change/",
        auth_views.PasswordChangeView.as_view(template_name=TEMPLATES + "change.html"),
        name="password_change",
    ),
    path(
        "password/change/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name=TEMPLATES + "change_done.html"),
        name="password_change_done",
    ),
    path(
        "password/reset/",
        auth_views.PasswordResetView.as_view(
            template_name=TEMPLATES + "reset.html",
            email_template_name=TEMPLATES + "reset_email.txt",
            subject_template_name=TEMPLATES + "reset_subject.txt",
        ),
        name="password_reset",
    ),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name=TEMPLATES + "reset_sent.html"),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(template_name=TEMPLATES + "reset_confirm.html"),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(template_name=TEMPLATES + "reset_complete.html"),
        name="password_reset_complete",
    ),
]
