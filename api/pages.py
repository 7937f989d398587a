"""The user's API keys page: create (the key is shown once; read-only or not, with or
without an expiry) and revoke, each key with its last use. A session only: a key never
reaches these Django views."""

from __future__ import annotations

import math

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from annotate.access import LEAD, ProjectRequest, project_view
from api.authentication import MAX_DAYS, token_create, token_revoke
from api.models import ApiToken
from api.throttles import TokenCreateThrottle
from learner import selectors as learner_selectors
from learner.export import export_job_request
from learner.models import ExportJob


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    read_only = forms.BooleanField(required=False, label="Read-only",
                                   help_text="GET requests only; any write is refused.")
    days = forms.IntegerField(required=False, min_value=1, max_value=MAX_DAYS,
                              label="Expires after (days)",
                              help_text="Empty: until you revoke it.")


@login_required
def tokens_page(request: HttpRequest) -> HttpResponse:
    new_key = None
    form = TokenForm(request.POST or None)
    # The API's key creation and this page share one per-user count (api.throttles).
    throttle = TokenCreateThrottle()
    wait = 0
    if request.method == "POST" and not throttle.allow_request(request, None):
        wait = math.ceil(throttle.wait() or 1)
        form.add_error(None, f"You have created too many keys lately; try again in {wait} s.")
    elif request.method == "POST" and form.is_valid():
        values = form.cleaned_data
        _token, new_key = token_create(user=request.user, name=values["name"],
                                       read_only=values["read_only"], days=values["days"])
        form = TokenForm()
    response = render(request, "api/tokens.html", {
        "tokens": ApiToken.objects.filter(user=request.user),
        "new_key": new_key,
        "form": form,
        "now": timezone.now(),
    }, status=429 if wait else 200)
    if wait:
        response["Retry-After"] = str(wait)
    return response


@login_required
@require_POST
def token_revoke_page(request: HttpRequest, token_id: int) -> HttpResponse:
    if token_revoke(user=request.user, token_id=token_id):
        messages.success(request, "Key revoked: it no longer works.")
    else:
        messages.error(request, "No such active key.")
    return redirect("api:tokens-page")


@csrf_exempt  # answers every method with a 404; there is nothing to forge
def api_not_found(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"detail": "No such API endpoint.", "code": "not_found"}, status=404)


@project_view(*LEAD)
@require_POST
def round_export_page(request: ProjectRequest, pk: int, number: int) -> HttpResponse:
    """The round page's Export button: queues a job (the export worker builds it) and
    goes back to the page, where the job's status and download link show."""
    round = learner_selectors.round_get(request.project, number)
    fmt = request.POST.get("format", ExportJob.Format.HF)
    try:
        job = export_job_request(round=round, fmt=fmt, requested_by=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{job.get_format_display()} export {job.status}.")
    return redirect("learner:round", pk=pk, number=number)
