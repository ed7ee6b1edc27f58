"""Writes for notifications and email addresses: notifications are mailed once the transaction commits, and only
to an address its user proved is theirs by a signed link (no token is stored: the link carries the user and the
address, signed with the site's secret and a timestamp, and works while the address waits for it)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.cache import caches
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from core.errors import LearnerError
from notifications.models import EmailAddress, Notification
from notifications.selectors import account_header_keys

logger = logging.getLogger(__name__)

VERIFY_SALT = "shipshape.notifications.email-verify"
# A second link within this time is refused: the first is likely still on its way.
RESEND_INTERVAL = timedelta(seconds=60)


class EmailVerificationRefused(LearnerError):
    """A verification link that is expired, altered, already used or for an address since changed."""


class EmailResendTooSoon(LearnerError):
    http_status = 429


def notification_send(*, user: AbstractBaseUser, kind: str, title: str, url: str, body: str = "") -> Notification:
    """Record a notification for `user`; it is emailed after the surrounding transaction commits."""
    if not url_is_on_site(url):
        raise ValueError(f"notification url must be a path on this site, got {url!r}")
    notification = Notification.objects.create(
        user=user, kind=Notification.Kind(kind), title=title[:300], url=url[:500], body=body
    )
    transaction.on_commit(lambda: notification_email(notification_id=notification.pk), robust=True)
    return notification


def url_is_on_site(url: str) -> bool:
    """A path on this site: starts with one "/" (not "//" nor "/\\", which browsers read as another host)."""
    return url.startswith("/") and not url.startswith(("//", "/\\"))


def notification_email(*, notification_id: int) -> bool:
    """Mail one notification to its user's verified address (see notifications.emails). False if not sent."""
    from notifications.emails import notification_mail

    return notification_mail(notification_id=notification_id)


def notification_mark_read(*, notification: Notification) -> None:
    if notification.read_at is None:
        notification.read_at = timezone.now()
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=notification.read_at)
        account_header_invalidate(user_id=notification.user_id)


def notifications_mark_all_read(*, user: AbstractBaseUser) -> int:
    marked = Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())
    account_header_invalidate(user_id=user.pk)
    return marked


# --- the header's cached facts -------------------------------------------------------------------------------------


def account_header_invalidate(*, user_id: int) -> None:
    """Forget the header facts cached for a user (unread count, review-queue link): call after any write that may
    change them. Saved and deleted notifications and enrollments call it by themselves (notifications.signals);
    writes through `QuerySet.update()` send no signal and call it here.

    The version is bumped now and again once the transaction commits: a page read between the two, which still
    sees the old rows, stores its facts under the first bump's version, which the second makes unused.
    """
    _account_header_bump(user_id)
    transaction.on_commit(lambda: _account_header_bump(user_id), robust=True)


def _account_header_bump(user_id: int) -> None:
    version_key, _ = account_header_keys(user_id=user_id)
    shared = caches["shared"]
    try:
        shared.incr(version_key)
    except ValueError:
        pass  # no version yet (or it expired): the next read starts a new one, which no stored facts match
    except Exception:
        # Redis unreachable from here: readers who cannot reach it either read the database. Facts Redis still
        # holds under the unchanged version can be shown until they expire (ACCOUNT_HEADER_SECONDS) — the one
        # case where a stale count outlives a write.
        logger.exception("bumping the header version of user %s failed", user_id)


# --- email addresses -------------------------------------------------------------------------------------------


def email_verification_lifetime() -> timedelta:
    return timedelta(days=int(settings.EMAIL_VERIFICATION_DAYS))


@transaction.atomic
def email_address_set(*, user: AbstractBaseUser, email: str) -> EmailAddress:
    """Give `user` the address `email` (already validated: see notifications.forms), unverified, and mail it the
    link that verifies it. The same address again, verified, changes nothing. Django's password reset mails
    `user.email`, so that is kept equal."""
    address = EmailAddress.objects.select_for_update().filter(user=user).first()
    if address is not None and address.email.casefold() == email.casefold() and address.is_verified:
        return address
    if address is None:
        address = EmailAddress(user=user)
    address.email, address.verified_at = email, None
    address.save()
    if user.email != email:
        user.email = email
        user.save(update_fields=["email"])
    email_verification_send(address=address)
    return address


def email_verification_token(*, address: EmailAddress) -> str:
    return signing.TimestampSigner(salt=VERIFY_SALT).sign_object({"user": address.user_id, "email": address.email})


def email_verification_send(*, address: EmailAddress, check_interval: bool = False) -> None:
    """Mail the verification link to `address` (after the transaction commits). With `check_interval`, refuse a
    second link within RESEND_INTERVAL of the last."""
    if address.is_verified:
        return
    now = timezone.now()
    if check_interval and address.verification_sent_at and now - address.verification_sent_at < RESEND_INTERVAL:
        raise EmailResendTooSoon(
            f"A link was sent to {address.email} less than a minute ago.",
            "Give it a minute to arrive (check the spam folder), then send another if it did not.",
        )
    EmailAddress.objects.filter(pk=address.pk).update(verification_sent_at=now)
    address.verification_sent_at = now
    path = reverse("email_verify", args=[email_verification_token(address=address)])
    link = f"{settings.SHIPSHAPE_SITE_URL.rstrip('/')}{path}"
    days = int(settings.EMAIL_VERIFICATION_DAYS)
    message = (
        f"Hello {address.user.get_username()},\n\n"
        f"Open this link to confirm that {address.email} is your address on Shipshape:\n\n{link}\n\n"
        f"It works once, for {days} day{'s' if days != 1 else ''}. Until then we mail you nothing else.\n"
        "If you did not ask for this, ignore this mail.\n"
    )

    def mail() -> None:
        try:
            send_mail(
                subject="[Shipshape] Confirm your email address",
                message=message,
                from_email=None,
                recipient_list=[address.email],
            )
        except Exception:
            logger.exception("mailing the verification link for email address %s failed", address.pk)

    transaction.on_commit(mail, robust=True)


def email_address_verify(*, token: str) -> EmailAddress:
    """Mark the address a verification link names as verified. Raises EmailVerificationRefused, saying why,
    for a link that expired, was altered, was already used, or names an address the user has since changed."""
    signer = signing.TimestampSigner(salt=VERIFY_SALT)
    days = int(settings.EMAIL_VERIFICATION_DAYS)
    try:
        payload = signer.unsign_object(token, max_age=email_verification_lifetime())
    except signing.SignatureExpired as exc:
        raise EmailVerificationRefused(
            f"This link has expired: links work for {days} day{'s' if days != 1 else ''}.",
            "Send yourself a new one from your email address page.",
        ) from exc
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise EmailVerificationRefused(
            "This link is not valid: it was cut short or changed on the way.",
            "Copy the whole link from the mail, or send yourself a new one from your email address page.",
        ) from exc
    user_id, email = (payload.get("user"), payload.get("email")) if isinstance(payload, dict) else (None, None)
    with transaction.atomic():
        address = (
            EmailAddress.objects.select_for_update(of=("self",)).select_related("user").filter(user_id=user_id).first()
        )
        if address is None or address.email != email:
            raise EmailVerificationRefused(
                "This link is for an address that is no longer on the account.",
                "Use the link in the newest mail, or send yourself a new one from your email address page.",
            )
        if address.is_verified:
            raise EmailVerificationRefused(
                f"This link was already used: {address.email} is verified.", "There is nothing more to do."
            )
        address.verified_at = timezone.now()
        address.save(update_fields=["verified_at", "updated_at"])
    return address
