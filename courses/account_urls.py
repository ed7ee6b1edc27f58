from django.contrib.auth import views as auth_views
from django.urls import path

from config import throttle
from courses import views
from notifications import views as notification_views

# Failed logins are throttled per (account, client address): a refused login answers 429 with the form and when
# to try again.
login = throttle.with_throttle_status(
    auth_views.LoginView.as_view(authentication_form=throttle.LoginForm, redirect_authenticated_user=True)
)

urlpatterns = [
    path("login/", login, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("email/", notification_views.email_settings, name="email_settings"),
    path("email/verify/<str:token>/", notification_views.email_verify, name="email_verify"),
]
