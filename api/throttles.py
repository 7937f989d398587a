"""Per-user rate limits for the endpoints that cost the server most per call.

Predictions run a model inside a web worker; API keys are credentials, so minting them is
limited too (the API's POST me/tokens/ and the keys page share one count). Rates come
from settings (LABELWISE_PREDICT_RATE, LABELWISE_TOKEN_RATE), read when a request is
checked so a test or a restart with new settings takes effect; the counts live in Django's
cache (per process unless CACHES names a shared one, like the login throttle's). A refused
request gets 429 with Retry-After.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import UserRateThrottle


class SettingRateThrottle(UserRateThrottle):
    """A UserRateThrottle whose rate is the Django setting `setting`."""

    setting = ""

    def get_rate(self) -> str:
        return getattr(settings, self.setting)


class PredictThrottle(SettingRateThrottle):
    scope = "predict"
    setting = "LABELWISE_PREDICT_RATE"


class TokenCreateThrottle(SettingRateThrottle):
    """Counts key creations only: listing one's keys is not limited."""

    scope = "token-create"
    setting = "LABELWISE_TOKEN_RATE"

    def allow_request(self, request: Any, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)
