"""Site-wide error answers that Django's defaults get wrong for us.

A request body over DATA_UPLOAD_MAX_MEMORY_SIZE raises RequestDataTooBig, a
SuspiciousOperation: Django answers it with a bare 400 on the web pages, and inside a DRF
view it escaped as a 500. It is neither: it is 413 Payload Too Large, with a message that
says what to do. `bad_request` is the URLconf's handler400 (the web pages and everything
a middleware rejects); api.exceptions turns the same exception into the API's JSON 413.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults

TOO_LARGE_CODE = "request_too_large"


def request_too_large_message() -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    size = f"{limit / 1024 / 1024:.0f} MB" if limit >= 1024 * 1024 else f"{limit:,} bytes"
    return (f"The request is too large: this server accepts at most {size} of form or JSON "
            "data per request. Send the data in smaller parts, or upload it as a file.")


def request_too_large(request: HttpRequest) -> HttpResponse:
    message = request_too_large_message()
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message, "code": TOO_LARGE_CODE}, status=413)
    return render(request, "errors/413.html", {"message": message}, status=413)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return request_too_large(request)
    return defaults.bad_request(request, exception)
