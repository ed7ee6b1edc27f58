"""The email address field, shared by the signup form and the email address page."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError

from notifications.models import EmailAddress

TAKEN = "This email address belongs to another account. Use another, or log in to that account."


def email_address_clean(*, email: str, user: AbstractBaseUser | None = None) -> str:
    """The address trimmed, its domain in lower case; refused when another account has it in any case."""
    email = get_user_model().objects.normalize_email(email.strip())
    others = EmailAddress.objects.filter(email__iexact=email)
    users = get_user_model().objects.filter(email__iexact=email)
    if user is not None:
        others, users = others.exclude(user=user), users.exclude(pk=user.pk)
    if others.exists() or users.exists():
        raise ValidationError(TAKEN, code="email_taken")
    return email


def email_field() -> forms.EmailField:
    return forms.EmailField(
        label="Email address",
        max_length=254,
        help_text="Where we send grading results and reviews, once you confirm it with the link we mail you.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )


class EmailAddressForm(forms.Form):
    email = email_field()

    def __init__(self, *args, user: AbstractBaseUser, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_email(self) -> str:
        return email_address_clean(email=self.cleaned_data["email"], user=self.user)
