"""Every API error is JSON: {"detail": message, "code": code} plus, where they apply,
"errors" (field -> messages) and "line" (the bad line of an import)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotate.io.base import DocumentImportError
from annotate.services import QueueError
from config.errors import TOO_LARGE_CODE, request_too_large_message
from learner.services import RoundBusy

log = logging.getLogger("api")


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = TOO_LARGE_CODE


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    extra: dict[str, Any] = {}
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            exc = exceptions.ValidationError(exc.message_dict)
        else:
            exc = exceptions.ValidationError({"non_field_errors": exc.messages})
    elif isinstance(exc, DocumentImportError):
        extra["line"] = exc.line
        exc = exceptions.ValidationError({"file": [str(exc)]}, code="import_error")
    elif isinstance(exc, RequestDataTooBig):
        # Reading request.data past DATA_UPLOAD_MAX_MEMORY_SIZE: the client's to fix.
        exc = PayloadTooLarge(request_too_large_message())
    elif isinstance(exc, QueueError):
        exc = Conflict(str(exc))
    elif isinstance(exc, RoundBusy):
        exc = Conflict(str(exc), code="round_busy")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        # A bug, not a bad request: logged with its traceback, answered in JSON like every
        # other API error (the view's transaction has already rolled back).
        log.error("API error in %s", context.get("view"), exc_info=exc)
        return Response({"detail": "Internal server error.", "code": "server_error"},
                        status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {
            "non_field_errors": response.data
        }
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid"
        if "line" in extra:
            code = "import_error"
        body = {"detail": _flatten(errors), "code": code, "errors": errors, **extra}
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        codes = getattr(exc, "get_codes", lambda: "error")()
        body = {"detail": str(detail), "code": codes if isinstance(codes, str) else "error"}
    response.data = body
    return response
