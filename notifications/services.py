"""Writes for notifications: one function creates them, and mails them once the transaction commits."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from notifications.models import Notification

logger = logging.getLogger(__name__)


def notification_send(*, user: AbstractBaseUser, kind: str, title: str, url: str, body: str = "") -> Notification:
    """Record a notification for `user`; it is emailed after the surrounding transaction commits."""
    if not url.startswith("/") or url.startswith("//"):
        raise ValueError(f"notification url must be a path on this site, got {url!r}")
    notification = Notification.objects.create(
        user=user, kind=Notification.Kind(kind), title=title[:300], url=url[:500], body=body
    )
    transaction.on_commit(lambda: notification_email(notification_id=notification.pk), robust=True)
    return notification


def notification_email(*, notification_id: int) -> bool:
    """Mail one notification to its user's verified address (see notifications.emails). False if not sent."""
    from notifications.emails import notification_mail

    return notification_mail(notification_id=notification_id)
