"""The Content-Security-Policy every response carries.

The pages load their own static files only: vendored htmx and static scripts (no inline
<script>, no on* handler attributes, no eval), static stylesheets (no <style> elements).
The one allowance is style *attributes*: the inline SVG charts, the progress bars and the
label swatches are drawn with them, and a style attribute cannot run code. htmx's own
injected indicator style is switched off in base.html (app.css carries it instead).
tests/test_security.py checks every template against this.

A view whose page needs more (the vendored Swagger UI and Redoc inject styles, Redoc runs
its search in a blob: worker) wraps itself in `with_policy(DOCS_POLICY)`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse

Policy = dict[str, str]

POLICY: Policy = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "style-src-attr": "'unsafe-inline'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
DOCS_POLICY: Policy = {**POLICY, "style-src": "'self' 'unsafe-inline'",
                       "worker-src": "'self' blob:"}


def header_value(policy: Policy) -> str:
    return "; ".join(f"{name} {sources}" for name, sources in policy.items())


def with_policy(policy: Policy) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Gives a view's responses `policy` instead of the default one."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            response = view(request, *args, **kwargs)
            response.content_security_policy = policy
            return response

        return wrapper

    return decorator


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            policy = getattr(response, "content_security_policy", POLICY)
            response["Content-Security-Policy"] = header_value(policy)
        return response
