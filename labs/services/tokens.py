"""Personal API tokens for the CLI. Only the token's sha256 is stored; the token itself is shown once."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from labs.models import ApiToken

TOKEN_PREFIX = "ss_"


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def api_token_create(*, user: AbstractBaseUser) -> tuple[ApiToken, str]:
    """Create a token for `user`; returns the row and the raw token, which is never retrievable again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, key_sha256=token_hash(raw), prefix=raw[len(TOKEN_PREFIX) :][:8])
    return token, raw


def api_token_revoke(*, user: AbstractBaseUser, token_id: int) -> bool:
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    return bool(deleted)


def api_token_authenticate(*, raw: str) -> AbstractBaseUser | None:
    """The active user owning `raw`, or None. Marks the token as used (at most once a minute, to spare writes)."""
    if not raw or len(raw) > 200:
        return None
    token = ApiToken.objects.select_related("user").filter(key_sha256=token_hash(raw)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
