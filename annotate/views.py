"""The annotator's page and the home page: thin views over services and selectors.

The annotator page is one template with named partials; HTMX requests get the `#item`
partial back (the next document) so labelling never reloads the page. Opening the page
reserves nothing: it shows the document the annotator holds, or a Start button whose POST
hands out the next one (a browser's prefetch or a link preview must not take work away).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotate import selectors, services
from annotate.access import ANNOTATORS, ProjectRequest, project_view
from annotate.models import Document

log = logging.getLogger("annotate")

BUSY_MESSAGE = ("The server was too busy to save that. Nothing was lost but this last "
                "action: please try again.")
BUSY_RETRY_AFTER_SECONDS = 2


def busy_means_try_again(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A database error that escapes an annotator's action (a deadlock PostgreSQL broke, a
    lock wait past its timeout, SQLite's "database is locked") becomes a message asking to
    try again, not a blank swap or a 500. The action's transaction has rolled back, so
    trying again is safe. htmx swaps only 2xx answers: it gets the item partial with the
    message; a plain request gets the page with 503 and Retry-After."""

    @wraps(view)
    def wrapper(request: ProjectRequest, pk: int, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, pk, *args, **kwargs)
        except DatabaseError:
            log.warning("Database busy on %s %s", request.method, request.path, exc_info=True)
            context = {"pk": pk, "error": BUSY_MESSAGE}
            if request.htmx:
                return render(request, "annotate/busy.html#item", context)
            response = render(request, "annotate/busy.html", context, status=503)
            response["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
            return response

    return wrapper


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@login_required
def home(request: HttpRequest) -> HttpResponse:
    memberships = selectors.projects_for(request.user)
    return render(request, "annotate/home.html", {"memberships": memberships})


def _item_context(request: ProjectRequest, document: Document | None, **extra: object) -> dict:
    project = request.project
    labels = selectors.labels_of(project)
    return {
        "project": project,
        "membership": request.membership,
        "document": document,
        "visible_meta": selectors.meta_for_annotators(document, labels),
        "show_external_id": project.annotators_see_external_ids,
        "labels": labels,
        "suggestion": selectors.suggestion_for(project, document, labels),
        "progress": selectors.project_progress(request.user, project),
        **extra,
    }


def _render_item(
    request: ProjectRequest, document: Document | None, *, status: int = 200, **extra: object
) -> HttpResponse:
    context = _item_context(request, document, **extra)
    template = "annotate/annotate.html"
    if request.htmx:
        # htmx swaps only 2xx responses; the error is shown inside the partial instead.
        return render(request, template + "#item", context)
    return render(request, template, context, status=status)


@busy_means_try_again
@project_view(*ANNOTATORS)
@require_GET
def annotate_page(request: ProjectRequest, pk: int) -> HttpResponse:
    """The document the annotator holds, or the Start button: a GET reserves nothing."""
    project = request.project
    held = selectors.current_assignment(request.user, project)
    guideline = selectors.guideline_current(project)
    return _render_item(
        request,
        held.document if held else None,
        guideline=guideline,
        # Rendered when the version was saved (GuidelineVersion.html), never here.
        guideline_html=guideline.html if guideline else "",
    )


@busy_means_try_again
@project_view(*ANNOTATORS)
@require_POST
def annotate_next(request: ProjectRequest, pk: int) -> HttpResponse:
    """Start: hands the annotator their next document (the one they hold, if any)."""
    return _next(request)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


@busy_means_try_again
@project_view(*ANNOTATORS)
@require_POST
def annotate_submit(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    label_ids = [i for i in map(_int_or_none, request.POST.getlist("label")) if i is not None]
    document_id = _int_or_none(request.POST.get("document"))
    notice, error = "", ""
    try:
        if document_id is None:
            raise services.QueueError("No document given.")
        services.annotation_submit(
            user=request.user,
            project=project,
            document_id=document_id,
            label_ids=label_ids,
            duration_ms=_int_or_none(request.POST.get("duration_ms")),
        )
        notice = "Saved."
    except ValidationError as exc:
        error = "; ".join(m for msgs in exc.message_dict.values() for m in msgs)
        document = Document.objects.filter(project=project, pk=document_id).first()
        return _render_item(request, document, error=error, status=400)
    except services.QueueError as exc:
        error = str(exc)
    return _next(request, notice=notice, error=error)


def _next(request: ProjectRequest, **extra: object) -> HttpResponse:
    """Hands out the next document (a POST's work) and shows it; without JavaScript, goes
    back to the page, which shows the document now held."""
    document = services.assignment_next(
        user=request.user, project=request.project
    )
    if not request.htmx:
        return redirect("annotate:annotate", pk=request.project.pk)
    # `asked`: the queue was asked and had nothing, so the partial says so (no Start).
    return _render_item(request, document, asked=True, **extra)


@busy_means_try_again
@project_view(*ANNOTATORS)
@require_POST
def annotate_skip(request: ProjectRequest, pk: int) -> HttpResponse:
    try:
        services.assignment_skip(
            user=request.user,
            project=request.project,
            document_id=_int_or_none(request.POST.get("document")) or 0,
        )
    except services.QueueError as exc:
        return _next(request, error=str(exc))
    return _next(request, notice="Skipped.")


@busy_means_try_again
@project_view(*ANNOTATORS)
@require_POST
def annotate_undo(request: ProjectRequest, pk: int) -> HttpResponse:
    try:
        undone = services.annotation_undo(
            user=request.user, project=request.project
        )
    except services.QueueError as exc:
        return _next(request, error=str(exc))
    if undone is None:
        return _next(request, error="Nothing to undo.")
    if not request.htmx:
        return redirect("annotate:annotate", pk=pk)
    # The answer taken back is shown selected: keep it (Enter, or its key) or change it.
    return _render_item(request, undone.document, previous=undone.labels,
                        notice="Undone: your answer is selected; keep it or change it.")


@busy_means_try_again
@project_view(*ANNOTATORS)
@require_POST
def annotate_flag(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    document_id = _int_or_none(request.POST.get("document")) or 0
    document = Document.objects.filter(project=project, pk=document_id).first()
    try:
        services.flag_create(
            user=request.user,
            project=project,
            document_id=document_id,
            comment=request.POST.get("comment", ""),
        )
    except ValidationError as exc:
        return _render_item(request, document, error=" ".join(exc.messages), status=400)
    except services.QueueError as exc:
        return _next(request, error=str(exc))
    if not request.htmx:
        return redirect("annotate:annotate", pk=pk)
    return _render_item(request, document, notice="Flagged for the lead. Label it or skip it.")
