"""Personal API tokens for the CLI. Only the token's sha256 is stored; the token itself is shown once.

Every token expires: its owner picks a lifetime from API_TOKEN_LIFETIMES_DAYS when creating it, and the API
refuses it from `expires_at` on (api_token_authenticate), so a token forgotten in a script stops working.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from labs.models import API_TOKEN_DEFAULT_LIFETIME_DAYS, ApiToken

TOKEN_PREFIX = "ss_"
API_TOKEN_LIFETIMES_DAYS = (30, API_TOKEN_DEFAULT_LIFETIME_DAYS, 365)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def api_token_create(
    *, user: AbstractBaseUser, lifetime_days: int = API_TOKEN_DEFAULT_LIFETIME_DAYS
) -> tuple[ApiToken, str]:
    """Create a token for `user` that works for `lifetime_days` (one of API_TOKEN_LIFETIMES_DAYS); returns the row
    and the raw token, which is never retrievable again."""
    if lifetime_days not in API_TOKEN_LIFETIMES_DAYS:
        raise ValueError(f"lifetime_days must be one of {API_TOKEN_LIFETIMES_DAYS}, not {lifetime_days!r}")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        key_sha256=token_hash(raw),
        prefix=raw[len(TOKEN_PREFIX) :][:8],
        expires_at=timezone.now() + timedelta(days=lifetime_days),
    )
    return token, raw


def api_token_revoke(*, user: AbstractBaseUser, token_id: int) -> bool:
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    return bool(deleted)


def api_token_authenticate(*, raw: str) -> AbstractBaseUser | None:
    """The active user owning `raw` if the token has not expired, or None. Marks the token as used (at most once
    a minute, to spare writes); an expired or refused token is not marked."""
    if not raw or len(raw) > 200:
        return None
    now = timezone.now()
    token = ApiToken.objects.select_related("user").filter(key_sha256=token_hash(raw), expires_at__gt=now).first()
    if token is None or not token.user.is_active:
        return None
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
