"""The review pages of leads and reviewers: where annotators disagree, where a confident
model contradicts the final label, the least certain labels, and open flags; each
document can be adjudicated (final label + reason) in place.

Thin views: the selectors pick and describe the documents, services.document_adjudicate
and services.flag_resolve write. Pages work without JavaScript (plain forms, redirect
back); with HTMX a decision swaps just that document's card.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from annotate import selectors, services
from annotate.access import REVIEWERS, ProjectRequest, project_view
from annotate.models import Document

REVIEW_PER_PAGE = 20
TEMPLATE = "annotate/review.html"

KINDS = {
    "disagreements": "Disagreements",
    "label-errors": "Likely label errors",
    "uncertain": "Uncertain labels",
    "flags": "Flags",
}


def _threshold(request: HttpRequest) -> float:
    try:
        value = float(request.GET.get("threshold", selectors.LABEL_ERROR_THRESHOLD))
    except ValueError:
        return selectors.LABEL_ERROR_THRESHOLD
    return min(max(value, 0.0), 1.0)


@project_view(*REVIEWERS)
def review(request: ProjectRequest, pk: int, kind: str = "disagreements") -> HttpResponse:
    if kind not in KINDS:
        raise Http404("No such review queue")
    project = request.project
    include_decided = request.GET.get("decided") == "1"
    threshold = _threshold(request)
    if kind == "disagreements":
        ids = selectors.review_disagreements(project=project, include_decided=include_decided)
    elif kind == "label-errors":
        ids = selectors.review_label_errors(
            project=project, threshold=threshold, include_decided=include_decided
        )
    elif kind == "uncertain":
        ids = selectors.review_uncertain(project=project, include_decided=include_decided)
    else:
        ids = selectors.review_flagged(project=project)
    page = Paginator(ids, REVIEW_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "project": project,
        "kind": kind,
        "kinds": KINDS,
        "page": page,
        "items": selectors.review_items(project=project, document_ids=list(page.object_list)),
        "labels": selectors.labels_of(project),
        "threshold": threshold,
        "include_decided": include_decided,
        "has_round": selectors.latest_done_round_id(project) is not None,
        "here": request.get_full_path(),
    }
    return render(request, TEMPLATE, context)


def _back(request: HttpRequest, pk: int) -> HttpResponse:
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("annotate:review", kwargs={"pk": pk})
    return redirect(target)


def _item_response(request: ProjectRequest, document: Document, **extra: object) -> HttpResponse:
    project = request.project
    items = selectors.review_items(project=project, document_ids=[document.pk])
    context = {
        "project": project,
        "item": items[0],
        "labels": selectors.labels_of(project),
        "here": request.POST.get("next", ""),
        **extra,
    }
    return render(request, TEMPLATE + "#review_item", context)


@project_view(*REVIEWERS)
@require_POST
def adjudicate(request: ProjectRequest, pk: int, document_id: int) -> HttpResponse:
    project = request.project
    document = get_object_or_404(Document, project=project, pk=document_id)
    label_ids = []
    for value in request.POST.getlist("label"):
        try:
            label_ids.append(int(value))
        except ValueError:
            continue
    try:
        services.document_adjudicate(
            document=document,
            user=request.user,
            label_ids=label_ids,
            reason=request.POST.get("reason", ""),
            resolve_flags=request.POST.get("resolve_flags") == "on",
        )
    except ValidationError as exc:
        error = " ".join(exc.messages)
        if request.htmx:
            return _item_response(request, document, error=error)
        messages.error(request, f"Document {document.pk}: {error}")
        return _back(request, pk)
    notice = f"Document {document.pk}: final label saved."
    if request.htmx:
        return _item_response(request, document, notice=notice)
    messages.success(request, notice)
    return _back(request, pk)


@project_view(*REVIEWERS)
@require_POST
def flag_resolve(request: ProjectRequest, pk: int, flag_id: int) -> HttpResponse:
    project = request.project
    try:
        flag = services.flag_resolve(project=project, flag_id=flag_id)
    except services.QueueError as exc:
        raise Http404(str(exc)) from None
    notice = f"Flag on document {flag.document_id} resolved."
    if request.htmx:
        return _item_response(request, flag.document, notice=notice)
    messages.success(request, notice)
    return _back(request, pk)
