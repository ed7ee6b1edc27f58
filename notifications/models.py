from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
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


class EmailAddress(models.Model):
    """The address a user's notifications are mailed to, once they proved it is theirs by a signed link (see
    notifications.services.email_verification_send). Users without one keep working; they get no mail."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_address")
    email = models.EmailField(max_length=254)
    verified_at = models.DateTimeField(null=True, blank=True, help_text="Empty until the link mailed to it is used.")
    verification_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="emailaddress_unique_email_any_case")]

    def __str__(self) -> str:
        return self.email

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None
