"""Writes that change a user's header (config.context_processors.navigation) forget its cached facts, including
writes outside the services: the admin's edits and deletions, and rows deleted with their course or user."""

from django.db.models.signals import post_delete, post_save


def _header_changed(sender, instance, **kwargs) -> None:
    from notifications.services import account_header_invalidate

    account_header_invalidate(user_id=instance.user_id)


def connect() -> None:
    # A notification's count; an enrollment's role grants the review queue (labs.permissions.can_use_review_queue).
    for model in ("notifications.Notification", "courses.Enrollment"):
        post_save.connect(_header_changed, sender=model, dispatch_uid=f"account-header:save:{model}")
        post_delete.connect(_header_changed, sender=model, dispatch_uid=f"account-header:delete:{model}")
