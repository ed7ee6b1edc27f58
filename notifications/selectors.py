"""Reads for notifications and email addresses."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Page, Paginator

from notifications.models import EmailAddress, Notification

PAGE_SIZE = 30


def notification_unread_count(*, user: AbstractBaseUser) -> int:
    """One indexed COUNT (user, read_at)."""
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def notifications_page(*, user: AbstractBaseUser, page: Any = 1) -> Page:
    """The user's notifications, newest first, PAGE_SIZE a page."""
    return Paginator(Notification.objects.filter(user=user), PAGE_SIZE).get_page(page)


def email_address_get(*, user: AbstractBaseUser) -> EmailAddress | None:
    return EmailAddress.objects.filter(user=user).first()


def email_address_verified(*, user: AbstractBaseUser) -> str | None:
    """The address mail goes to, or None while the user has no verified one."""
    address = EmailAddress.objects.filter(user=user, verified_at__isnull=False).values_list("email", flat=True)
    return address.first()
