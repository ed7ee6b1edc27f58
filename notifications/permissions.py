"""Access to notifications: each one belongs to one user; anyone else gets 404, as for a missing one."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404

from notifications.models import Notification


def access_notification_by_id(*, notification_id: int, user: AbstractBaseUser | AnonymousUser) -> Notification:
    """The notification if it is `user`'s own; Http404 otherwise (missing and forbidden alike)."""
    if not user.is_authenticated:
        raise Http404("No such notification.")
    notification = Notification.objects.filter(pk=notification_id).first()
    if notification is None:
        raise Http404("No such notification.")
    if notification.user_id != user.pk:
        raise Http404("No such notification.")
    return notification
