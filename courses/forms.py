from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    """Username and password only: an email address is not needed to follow a course."""

    class Meta(UserCreationForm.Meta):
        fields = ("username",)
