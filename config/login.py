"""Login throttling: after LABELWISE_LOGIN_MAX_FAILURES failed logins for one username, or
LABELWISE_LOGIN_MAX_FAILURES_PER_IP from one client address, within
LABELWISE_LOGIN_WINDOW_MINUTES, further attempts are refused with a message saying so
until the window (counted from the first failure) ends, the right password included.

The counts live in Django's cache: a few keys, no table. A success clears its username's
count, not the address's (one known account must not reset a guesser's address). Both
the login page and the admin's use these forms.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest

PREFIX = "labelwise:login-failures"


def client_ip(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    header = settings.LABELWISE_CLIENT_IP_HEADER
    if header:
        # The last entry: the one our own proxy appended (earlier ones the client wrote).
        forwarded = request.META.get(header, "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR", "")


def _key(kind: str, value: str) -> str:
    return f"{PREFIX}:{kind}:{hashlib.sha256(value.encode('utf-8')).hexdigest()}"


def _keys(username: str, ip: str) -> tuple[str, str]:
    return _key("user", username.strip().casefold()), _key("ip", ip)


def _window_seconds() -> int:
    return settings.LABELWISE_LOGIN_WINDOW_MINUTES * 60


def login_refused(*, username: str, ip: str) -> bool:
    user_key, ip_key = _keys(username, ip)
    counts = cache.get_many([user_key, ip_key])
    return (counts.get(user_key, 0) >= settings.LABELWISE_LOGIN_MAX_FAILURES
            or counts.get(ip_key, 0) >= settings.LABELWISE_LOGIN_MAX_FAILURES_PER_IP)


def login_failed(*, username: str, ip: str) -> None:
    for key in _keys(username, ip):
        # add() starts the window at the first failure; incr() keeps its expiry.
        cache.add(key, 0, _window_seconds())
        try:
            cache.incr(key)
        except ValueError:  # expired between the two calls
            cache.set(key, 1, _window_seconds())


def login_succeeded(*, username: str) -> None:
    cache.delete(_keys(username, "")[0])


def refused_message() -> str:
    minutes = settings.LABELWISE_LOGIN_WINDOW_MINUTES
    return (f"Too many failed logins for this account or from this address. Wait "
            f"{minutes} minutes and try again, or ask an administrator to reset your password.")


class ThrottledLogin:
    """Mixed into an AuthenticationForm: refuses early while throttled, counts failures."""

    request: HttpRequest | None
    cleaned_data: dict[str, Any]

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request)
        if login_refused(username=username, ip=ip):
            raise ValidationError(refused_message(), code="throttled")
        try:
            cleaned = super().clean()  # type: ignore[misc]
        except ValidationError:
            login_failed(username=username, ip=ip)
            raise
        if self.get_user() is not None:  # type: ignore[attr-defined]
            login_succeeded(username=username)
        return cleaned


class ThrottledAuthenticationForm(ThrottledLogin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLogin, AdminAuthenticationForm):
    pass
