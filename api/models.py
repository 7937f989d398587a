"""API tokens: tables and single-row behaviour only. (Model-export jobs are the learner's:
learner.models.ExportJob.)"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone


def token_digest(key: str) -> str:
    """What is stored for a token: its SHA-256. Keys are 256 random bits, so a fast hash is
    enough (no password-style stretching needed); the key itself is never stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiToken(models.Model):
    """A personal API key. Shown once at creation; afterwards only its prefix is.

    A key acts as its user, limited by its scope (`read_only`: safe methods only) and its
    lifetime (`expires_at`; null: until revoked). Keys never create or revoke keys: that
    takes a signed-in session (api.permissions.SessionOnlyForWrites)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the key is for.")
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    read_only = models.BooleanField(
        default=False, help_text="Only reads (GET, HEAD, OPTIONS); any write is refused (403)."
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Null: until revoked.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name}) of {self.user}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired
