"""API tokens and model-export jobs: tables and single-row behaviour only."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone

from learner.models import Round


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


class ExportJob(models.Model):
    """One export of a finished round's model, and the job row the export worker claims.

    Status: queued -> running (claimed) -> done (path holds the zip) | failed (error)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Format(models.TextChoices):
        HF = "hf", "Hugging Face folder (safetensors)"
        ONNX = "onnx", "ONNX (float32)"
        ONNX_INT8 = "onnx-int8", "ONNX, int8-quantized"

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="export_jobs")
    format = models.CharField(max_length=10, choices=Format.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    path = models.CharField(max_length=500, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"], name="export_queue_idx")]

    def __str__(self) -> str:
        return f"{self.format} export of {self.round} ({self.status})"
