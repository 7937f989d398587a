"""What an API key may do beyond what its user may: the key's own limits.

A read-only key reads (safe methods) and nothing else; no key creates or revokes keys (a
leaked key must not be able to mint itself successors). Both sit beside IsAuthenticated in
REST_FRAMEWORK's DEFAULT_PERMISSION_CLASSES or on the token views."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from api.models import ApiToken


def _key(request: Request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


class ReadOnlyKeys(BasePermission):
    message = "This API key is read-only: it may only read (GET)."

    def has_permission(self, request: Request, view: Any) -> bool:
        key = _key(request)
        return key is None or not key.read_only or request.method in SAFE_METHODS


class SessionOnlyForWrites(BasePermission):
    message = ("API keys are created and revoked from a signed-in session (the API keys "
               "page, or `manage.py token_create`), not with a key.")

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.method in SAFE_METHODS or _key(request) is None
