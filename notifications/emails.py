"""Mailing notifications through Django's email backend (console in development), to verified addresses only."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from notifications.models import Notification
from notifications.selectors import email_address_verified

logger = logging.getLogger(__name__)


def notification_mail(*, notification_id: int) -> bool:
    notification = Notification.objects.select_related("user").filter(pk=notification_id).first()
    if notification is None or notification.emailed_at is not None:
        return False
    address = email_address_verified(user=notification.user)
    if not address:
        return False
    link = f"{settings.SHIPSHAPE_SITE_URL.rstrip('/')}{notification.url}"
    try:
        send_mail(
            subject=f"[Shipshape] {notification.title}",
            message=f"{notification.body}\n\n{link}\n".lstrip(),
            from_email=None,
            recipient_list=[address],
        )
    except Exception:
        # The in-app notification is kept; mail is best effort and a broken mail server must not undo a review.
        logger.exception("mailing notification %s failed", notification.pk)
        return False
    Notification.objects.filter(pk=notification.pk).update(emailed_at=timezone.now())
    return True
