from django.conf import settings
from django.db import models
from django.utils import timezone


class Notification(models.Model):
    """Something that happened to a user's work, shown in the app (unread count in the header) and emailed to a
    verified address."""

    class Kind(models.TextChoices):
        GRADING_FINISHED = "grading_finished", "Grading finished"
        REVIEW_POSTED = "review_posted", "Review posted"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        APPROVED = "approved", "Approved"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=500, help_text="A path on this site, never an outside address.")
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "read_at"])]
