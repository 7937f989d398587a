"""Per-user API keys: `Authorization: Token <key>` (or `Bearer <key>`)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from api.models import ApiToken, token_digest

KEY_PREFIX = "lw_"
# last_used_at is refreshed at most this often, so every request is not also a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# The longest lifetime a key may be given, in days (ten years: "until revoked" is null).
MAX_DAYS = 3650


def token_create(
    *, user: AbstractBaseUser, name: str, read_only: bool = False, days: int | None = None
) -> tuple[ApiToken, str]:
    """A new key for the user: returns the row and the key, which is never stored. A
    read-only key only reads; `days` sets its lifetime (None: until revoked)."""
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise ValidationError({"days": f"A key lives from 1 to {MAX_DAYS} days (or until "
                                       "revoked)."})
    name = name.strip()[:100] or "API key"
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=key[:10], digest=token_digest(key), read_only=read_only,
        expires_at=timezone.now() + timedelta(days=days) if days is not None else None,
    )
    return token, key


def tokens_of(user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The user's API keys (digests and metadata only: a key is shown once, at creation)."""
    return ApiToken.objects.filter(user=user)


def token_revoke(*, user: AbstractBaseUser, token_id: int) -> bool:
    """Revokes one of the user's own keys; False when there is no such active key."""
    return bool(
        ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )


class TokenAuthentication(authentication.BaseAuthentication):
    keywords = ("token", "bearer")

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: use 'Token <key>'."
            )
        try:
            key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The API key is not valid.") from None
        token = (
            ApiToken.objects.select_related("user").filter(digest=token_digest(key)).first()
        )
        if token is not None and token.revoked_at is None and token.is_expired:
            raise exceptions.AuthenticationFailed("The API key has expired: create a new one.")
        if token is None or not token.is_active or not token.user.is_active:
            raise exceptions.AuthenticationFailed("The API key is not valid or was revoked.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return "Token"
