"""Reads for notifications and email addresses."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Page, Paginator

from notifications.models import EmailAddress, Notification

PAGE_SIZE = 30
# How long a user's header facts (review-queue link, unread count: config.context_processors) stay in the shared
# cache. Every write that changes them bumps the version, so this only bounds a stale count after a write made
# while Redis could not be reached (a reload after it costs two small queries).
ACCOUNT_HEADER_SECONDS = 600


def account_header_keys(*, user_id: int) -> tuple[str, str]:
    """The shared cache's keys for a user's header: the version every write bumps (notifications.services.
    account_header_invalidate) and the facts, stored with the version they were read under."""
    return f"account-header:version:{user_id}", f"account-header:v1:{user_id}"


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
