"""The lead's pages: create a project, its overview, settings, labels, members, guidelines,
documents, import, holdout and export.

Thin views: a Django form validates the input, one service or selector does the work, a
template renders it. Every project page goes through `access.project_view` (strangers get
404, members without the role 403). Writes are POST with CSRF; pages work without
JavaScript, and HTMX requests for the label editor get the row partial back.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import password_validation
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from annotate import selectors, services
from annotate.access import (
    DOCUMENT_VIEWERS,
    LEAD,
    ProjectRequest,
    may_create_accounts,
    project_view,
)
from annotate.io import exporters
from annotate.io.importer import FORMAT_CHOICES, DocumentImportError, documents_import
from annotate.models import Document, GuidelineVersion, Label, Membership, Project

DOCUMENTS_PER_PAGE = 50


def _add_errors(form: forms.Form, exc: ValidationError) -> None:
    """Shows a service's ValidationError on the form: on its field when the form has one."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


# --- create and overview -------------------------------------------------------------------


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    task_type = forms.ChoiceField(
        choices=[
            (Project.TaskType.SINGLE_LABEL, "Single-label: one label per document"),
            (Project.TaskType.MULTI_LABEL, "Multi-label: any number of labels per document"),
        ],
        initial=Project.TaskType.SINGLE_LABEL,
        widget=forms.RadioSelect,
    )
    overlap = forms.IntegerField(
        min_value=1, max_value=10, initial=1,
        help_text="How many annotators label each document (k).",
    )
    labels = forms.CharField(
        required=False, help_text="Comma-separated, e.g. business, sport, tech."
    )
    guidelines = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 8}), help_text="Markdown."
    )

    def clean_labels(self) -> list[str]:
        names: list[str] = []
        for raw in self.cleaned_data["labels"].split(","):
            name = raw.strip()
            if name and name.casefold() not in {n.casefold() for n in names}:
                names.append(name)
        return names


@login_required
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            project = services.project_create(
                name=data["name"],
                created_by=request.user,
                description=data["description"],
                task_type=data["task_type"],
                overlap=data["overlap"],
                labels=data["labels"],
                guidelines=data["guidelines"],
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"Project {project.name!r} created: you are its lead.")
            return redirect("annotate:project", pk=project.pk)
    return render(request, "annotate/project_create.html", {"form": form})


@dataclass(frozen=True)
class Bar:
    name: str
    colour: str
    count: int
    y: int
    width: float
    text_x: float


def _label_chart(labels: Iterable[Label], counts: dict[int, int]) -> dict:
    """Geometry of a horizontal bar chart of final-label counts, drawn as inline SVG."""
    row, label_w, bar_w = 26, 150, 380
    most = max(counts.values(), default=0) or 1
    bars = [
        Bar(
            name=label.name,
            colour=label.colour,
            count=counts.get(label.pk, 0),
            y=i * row,
            width=round(bar_w * counts.get(label.pk, 0) / most, 1),
            text_x=round(label_w + bar_w * counts.get(label.pk, 0) / most + 6, 1),
        )
        for i, label in enumerate(labels)
    ]
    return {
        "bars": bars,
        "height": max(len(bars) * row, row),
        "label_w": label_w,
        "name_x": label_w - 8,
        "width": label_w + bar_w + 70,
    }


@project_view()
def project_overview(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    is_lead = request.membership.is_lead
    labels = selectors.labels_of(project)
    return render(
        request,
        "annotate/project.html",
        {
            "project": project,
            "membership": request.membership,
            "stats": selectors.project_stats(project=project),
            "chart": _label_chart(labels, selectors.label_counts(project)),
            "flags": selectors.flags_open(project=project) if is_lead else [],
            "export_formats": EXPORT_LINKS,
        },
    )


# --- settings ------------------------------------------------------------------------------


class ProjectSettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    overlap = forms.IntegerField(
        min_value=1, max_value=10,
        help_text="Annotators per document. Lowering it settles documents that already have "
        "enough answers; raising it applies to documents not yet final.",
    )
    annotators_see_others = forms.BooleanField(
        required=False, label="Annotators may see other annotators' labels"
    )
    text_direction = forms.ChoiceField(choices=[("ltr", "Left to right"), ("rtl", "Right to left")])
    annotators_see_external_ids = forms.BooleanField(
        required=False, label="Annotators see external ids",
        help_text="Off by default: ids such as 'sport/409' can give the answer away.",
    )


@project_view(*LEAD)
def project_settings(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    initial = {
        field: getattr(project, field) for field in ProjectSettingsForm.base_fields
    }
    form = ProjectSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.project_update(project=project, **form.cleaned_data)
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("annotate:project_settings", pk=pk)
    return render(
        request, "annotate/project_settings.html", {"project": project, "form": form}
    )


# --- labels --------------------------------------------------------------------------------


class LabelForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, max_length=2000)
    colour = forms.CharField(max_length=7, widget=forms.TextInput(attrs={"type": "color"}))
    hotkey = forms.CharField(
        required=False, max_length=1, strip=False,
        widget=forms.TextInput(attrs={"size": 2, "autocomplete": "off"}),
    )


def _labels_context(request: ProjectRequest, form: LabelForm | None = None) -> dict:
    project = request.project
    labels = selectors.labels_of(project)
    if form is None:
        colour = services.DEFAULT_COLOURS[len(labels) % len(services.DEFAULT_COLOURS)]
        form = LabelForm(initial={"colour": colour})
    return {"project": project, "labels": labels, "form": form}


@project_view(*LEAD)
def labels(request: ProjectRequest, pk: int) -> HttpResponse:
    form = None
    if request.method == "POST":
        form = LabelForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                # A blank hotkey on a new label means "pick a free one".
                label = services.label_create(
                    project=request.project,
                    name=data["name"],
                    description=data["description"],
                    colour=data["colour"],
                    hotkey=data["hotkey"] or None,
                )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                if not request.htmx:
                    messages.success(request, f"Label {label.name!r} added.")
                    return redirect("annotate:labels", pk=pk)
                form = None
    context = _labels_context(request, form)
    if request.htmx and request.method == "POST":
        return render(request, "annotate/labels.html#labels_panel", context)
    return render(request, "annotate/labels.html", context)


@project_view(*LEAD)
def label_edit(request: ProjectRequest, pk: int, label_id: int) -> HttpResponse:
    project = request.project
    label = get_object_or_404(Label, pk=label_id, project=project)
    initial = {
        "name": label.name, "description": label.description,
        "colour": label.colour, "hotkey": label.hotkey,
    }
    form = LabelForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.label_update(label=label, **form.cleaned_data)
        except ValidationError as exc:
            _add_errors(form, exc)
            label.refresh_from_db()
        else:
            if request.htmx:
                return render(
                    request, "annotate/labels.html#label_row", {"project": project, "label": label}
                )
            messages.success(request, f"Label {label.name!r} saved.")
            return redirect("annotate:labels", pk=pk)
    context = {"project": project, "label": label, "form": form}
    if request.htmx:
        return render(request, "annotate/label_edit.html#edit_row", context)
    return render(request, "annotate/label_edit.html", context)


@project_view(*LEAD)
@require_POST
def label_delete(request: ProjectRequest, pk: int, label_id: int) -> HttpResponse:
    project = request.project
    label = get_object_or_404(Label, pk=label_id, project=project)
    try:
        services.label_delete(label=label)
    except ValidationError as exc:
        error = " ".join(exc.messages)
        if request.htmx:
            return render(
                request,
                "annotate/labels.html#label_row",
                {"project": project, "label": label, "error": error},
            )
        messages.error(request, error)
    else:
        if request.htmx:
            return HttpResponse("")  # the row's outerHTML becomes nothing
        messages.success(request, f"Label {label.name!r} deleted.")
    return redirect("annotate:labels", pk=pk)


# --- members -------------------------------------------------------------------------------


class MemberForm(forms.Form):
    # The service normalises and validates the name (annotate.usernames).
    username = forms.CharField(max_length=200)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.ANNOTATOR)
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Only to create a new account; leave empty for an existing user.",
    )

    def __init__(self, *args: Any, can_create: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not can_create:
            # Only staff create accounts (access.may_create_accounts); a password sent
            # anyway is not even read.
            del self.fields["password"]

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if password:
            password_validation.validate_password(password)
        return password


@project_view(*LEAD)
def members(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    can_create = may_create_accounts(request.user)
    form = MemberForm(request.POST or None, can_create=can_create)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            membership, created = services.membership_set(
                project=project,
                username=data["username"],
                role=data["role"],
                create_password=data.get("password") or None,
                by=request.user,
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            who = membership.user.get_username()
            role = membership.get_role_display().lower()
            if created:
                messages.success(request, f"Created the account {who!r} as {role}.")
            else:
                messages.success(request, f"{who} is now {role} in this project.")
            return redirect("annotate:members", pk=pk)
    memberships = project.memberships.select_related("user").order_by("role", "user__username")
    return render(
        request,
        "annotate/members.html",
        {
            "project": project,
            "form": form,
            "memberships": memberships,
            "roles": Membership.Role.choices,
            "can_create": can_create,
        },
    )


@project_view(*LEAD)
@require_POST
def member_remove(request: ProjectRequest, pk: int, membership_id: int) -> HttpResponse:
    project = request.project
    membership = get_object_or_404(
        Membership.objects.select_related("user"), pk=membership_id, project=project
    )
    try:
        services.membership_remove(membership=membership)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{membership.user.get_username()} removed from the project.")
    return redirect("annotate:members", pk=pk)


# --- guidelines ----------------------------------------------------------------------------


@project_view()
def guidelines(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    current = selectors.guideline_current(project)
    return render(
        request,
        "annotate/guidelines.html",
        {
            "project": project,
            "membership": request.membership,
            "current": current,
            "current_html": current.html if current else "",
            "history": selectors.guideline_history(project=project),
        },
    )


class GuidelineForm(forms.Form):
    text = forms.CharField(
        required=False, strip=False, widget=forms.Textarea(attrs={"rows": 22}),
        label="Guidelines (Markdown)",
    )
    note = forms.CharField(
        required=False, max_length=300, label="What changed and why",
    )


@project_view(*LEAD)
def guideline_edit(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    current = selectors.guideline_current(project)
    form = GuidelineForm(request.POST or None, initial={"text": current.text if current else ""})
    if request.method == "POST" and form.is_valid():
        try:
            saved = services.guideline_update(
                project=project,
                text=form.cleaned_data["text"],
                user=request.user,
                note=form.cleaned_data["note"],
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            if current is not None and saved.pk == current.pk:
                messages.info(request, "The text is unchanged: no new version was made.")
                return redirect("annotate:guidelines", pk=pk)
            messages.success(request, f"Saved as version {saved.version}.")
            return redirect("annotate:guideline_version", pk=pk, version=saved.version)
    return render(
        request,
        "annotate/guideline_edit.html",
        {"project": project, "form": form, "current": current},
    )


def _diff_rows(lines: list[str]) -> list[tuple[str, str]]:
    """(css class, line) for each unified-diff line; the ---/+++ header lines are dropped."""
    rows = []
    for line in lines:
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            rows.append(("hunk", line))
        elif line.startswith("+"):
            rows.append(("add", line))
        elif line.startswith("-"):
            rows.append(("del", line))
        else:
            rows.append(("", line))
    return rows


@project_view()
def guideline_version(request: ProjectRequest, pk: int, version: int) -> HttpResponse:
    project = request.project
    shown = get_object_or_404(
        GuidelineVersion.objects.select_related("created_by"), project=project, version=version
    )
    previous = project.guidelines.filter(version__lt=version).order_by("-version").first()
    return render(
        request,
        "annotate/guideline_version.html",
        {
            "project": project,
            "shown": shown,
            "shown_html": shown.html,
            "previous": previous,
            "diff": _diff_rows(selectors.guideline_diff(previous, shown)),
        },
    )


# --- documents -----------------------------------------------------------------------------


class DocumentFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *selectors.DOCUMENT_STATUSES.items()]
    )
    label = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    predicted = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, label="Predicted label"
    )
    min_confidence = forms.FloatField(
        required=False, min_value=0, max_value=100, label="Confidence from (%)"
    )
    max_confidence = forms.FloatField(
        required=False, min_value=0, max_value=100, label="to (%)"
    )
    q = forms.CharField(required=False, max_length=200, label="Text contains")
    sort = forms.ChoiceField(required=False, choices=list(selectors.DOCUMENT_SORTS.items()))

    def __init__(self, *args: object, labels: Iterable[Label] = (), **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        choices = [(lb.pk, lb.name) for lb in labels]
        self.fields["label"].choices = [("", "Any label"), *choices]
        self.fields["predicted"].choices = [("", "Any prediction"), *choices]

    def query(self, project: Project) -> Any:
        """The documents these filters select (all of them if the form is invalid)."""
        data = self.cleaned_data if self.is_valid() else {}

        def share(name: str) -> float | None:
            value = data.get(name)
            return None if value is None else value / 100

        return selectors.document_list(
            project=project,
            status=data.get("status", ""),
            label_id=data.get("label"),
            q=data.get("q", ""),
            predicted_label_id=data.get("predicted"),
            min_confidence=share("min_confidence"),
            max_confidence=share("max_confidence"),
            sort=data.get("sort") or "id",
        )


@project_view(*DOCUMENT_VIEWERS)
def documents(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    labels = selectors.labels_of(project)
    form = DocumentFilterForm(request.GET, labels=labels)
    page = Paginator(form.query(project), DOCUMENTS_PER_PAGE).get_page(request.GET.get("page"))
    by_id = {label.pk: label for label in labels}
    for document in page:
        document.final = [by_id[i] for i in document.final_labels or [] if i in by_id]
        document.predicted = [by_id[i] for i in document.predicted_labels or [] if i in by_id]
    context = {
        "project": project,
        "form": form,
        "page": page,
        "labels": labels,
        "membership": request.membership,
        "here": request.get_full_path(),
    }
    context |= _bulk_context(project)
    if request.htmx:
        return render(request, "annotate/documents.html#document_table", context)
    return render(request, "annotate/documents.html", context)


BULK_ACTIONS = {
    "label": "Set the final label",
    "review": "Send to review (flag)",
    "holdout": "Move to the holdout",
    "assign": "Hand to an annotator",
    "delete": "Delete",
}


def _bulk_context(project: Project) -> dict:
    return {
        "bulk_actions": BULK_ACTIONS,
        "bulk_limit": services.BULK_LIMIT,
        "annotators": selectors.annotator_usernames(project=project),
    }


@project_view(*LEAD)
@require_POST
def documents_bulk(request: ProjectRequest, pk: int) -> HttpResponse:
    """One action on the ticked documents, or on every document the list's filters select
    (`scope=all`, the filters sent back as they were), at most services.BULK_LIMIT."""
    project = request.project
    filters = request.POST.get("filters", "")
    back = reverse("annotate:documents", kwargs={"pk": pk}) + (f"?{filters}" if filters else "")
    action = request.POST.get("action", "")
    if request.POST.get("scope") == "all":
        form = DocumentFilterForm(QueryDict(filters), labels=selectors.labels_of(project))
        # One past the limit is enough to refuse with a clear message.
        ids = list(form.query(project).values_list("pk", flat=True)[: services.BULK_LIMIT + 1])
    else:
        ids = _label_ids(request.POST.getlist("document"))
    try:
        if action == "label":
            done = services.documents_label(
                project=project, document_ids=ids, user=request.user,
                label_ids=_label_ids(request.POST.getlist("label")),
                reason=request.POST.get("reason", ""),
            )
            notice = f"{done} document{pluralize(done)} labelled."
        elif action == "review":
            done = services.documents_send_to_review(
                project=project, document_ids=ids, user=request.user,
                comment=request.POST.get("comment", ""),
            )
            notice = f"{done} document{pluralize(done)} sent to review."
        elif action == "holdout":
            done = services.documents_to_holdout(project=project, document_ids=ids)
            notice = f"{done} document{pluralize(done)} moved to the holdout."
        elif action == "assign":
            summary = services.documents_assign(
                project=project, document_ids=ids, by=request.user,
                username=request.POST.get("annotator", ""),
            )
            notice = (f"{summary.assigned} document{pluralize(summary.assigned)} handed to "
                      f"{request.POST.get('annotator')}; left out: {summary.final} already "
                      f"final, {summary.full} with every slot taken, {summary.seen} they "
                      "had before.")
        elif action == "delete":
            if request.POST.get("confirm") != "delete":
                raise ValidationError("Tick the box to confirm the delete.")
            done = services.documents_delete(
                project=project, document_ids=services.bulk_ids(project, ids)
            )
            notice = f"{done} document{pluralize(done)} deleted."
        else:
            raise ValidationError("Choose an action.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, notice)
    return redirect(back)


def _label_ids(values: Iterable[str]) -> list[int]:
    ids = []
    for value in values:
        try:
            ids.append(int(value))
        except ValueError:
            continue
    return ids


@project_view(*DOCUMENT_VIEWERS)
def document_detail(request: ProjectRequest, pk: int, document_id: int) -> HttpResponse:
    project = request.project
    history = selectors.document_history(project=project, document_id=document_id)
    return render(
        request,
        "annotate/document.html",
        {
            "project": project,
            "membership": request.membership,
            "history": history,
            "labels": selectors.labels_of(project),
            "back": _documents_back(request),
        },
    )


def _documents_back(request: ProjectRequest) -> str:
    """The documents list the lead came from (its filters kept), or the plain list."""
    target = request.GET.get("back") or request.POST.get("back") or ""
    if target.startswith(f"/p/{request.project.pk}/documents/"):
        return target
    return reverse("annotate:documents", kwargs={"pk": request.project.pk})


def _to_document(request: HttpRequest, pk: int, document_id: int) -> HttpResponse:
    url = reverse("annotate:document", kwargs={"pk": pk, "document_id": document_id})
    return redirect(f"{url}?{urlencode({'back': _documents_back(request)})}")


@project_view(*LEAD)
@require_POST
def document_decide(request: ProjectRequest, pk: int, document_id: int) -> HttpResponse:
    """The lead sets the document's final label(s), with a reason (an adjudication)."""
    project = request.project
    document = get_object_or_404(Document, project=project, pk=document_id)
    try:
        services.document_adjudicate(
            document=document, user=request.user,
            label_ids=_label_ids(request.POST.getlist("label")),
            reason=request.POST.get("reason", ""),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Final label saved.")
    return _to_document(request, pk, document_id)


@project_view(*LEAD)
@require_POST
def document_answer_delete(
    request: ProjectRequest, pk: int, document_id: int, annotation_id: int
) -> HttpResponse:
    project = request.project
    get_object_or_404(Document, project=project, pk=document_id)
    try:
        services.annotation_delete(project=project, annotation_id=annotation_id)
    except services.QueueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Answer deleted; the final label follows the answers left.")
    return _to_document(request, pk, document_id)


@project_view(*LEAD)
@require_POST
def document_delete(request: ProjectRequest, pk: int, document_id: int) -> HttpResponse:
    project = request.project
    document = get_object_or_404(Document, project=project, pk=document_id)
    services.documents_delete(project=project, document_ids=[document.pk])
    messages.success(request, f"Document {document_id} deleted, with its answers and history.")
    return redirect(_documents_back(request))


# --- import --------------------------------------------------------------------------------

IMPORT_FORMATS = [("auto", "Detect from the file name and content"), *FORMAT_CHOICES]


class ImportForm(forms.Form):
    file = forms.FileField()
    fmt = forms.ChoiceField(choices=IMPORT_FORMATS, initial="auto", label="Format")
    text_field = forms.CharField(max_length=100, initial="text")
    label_field = forms.CharField(
        max_length=100, initial="label", required=False,
        help_text="Column/key holding an existing label (optional).",
    )


@project_view(*LEAD)
def import_upload(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    form = ImportForm(request.POST or None, request.FILES or None)
    report, error = None, None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            report = documents_import(
                project=project,
                file=upload,
                fmt=None if form.cleaned_data["fmt"] == "auto" else form.cleaned_data["fmt"],
                user=request.user,
                text_field=form.cleaned_data["text_field"],
                label_field=form.cleaned_data["label_field"],
                name=upload.name,
            )
        except DocumentImportError as exc:
            error = exc
    return render(
        request,
        "annotate/import.html",
        {"project": project, "form": form, "report": report, "error": error},
        status=400 if error else 200,
    )


# --- holdout -------------------------------------------------------------------------------


class HoldoutForm(forms.Form):
    share = forms.FloatField(
        required=False, min_value=0.1, max_value=90, label="Share of labelled documents (%)"
    )
    count = forms.IntegerField(
        required=False, min_value=1, label="…or a number of documents",
        help_text="To give a count, leave the share empty.",
    )
    group_field = forms.ChoiceField(
        required=False, label="Keep groups together by metadata field",
        help_text="Documents sharing this field's value go to the same side.",
    )
    seed = forms.IntegerField(initial=0, help_text="The same seed gives the same holdout.")

    def __init__(self, *args: object, meta_keys: Iterable[str] = (), **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["group_field"].choices = [("", "No grouping")] + [(k, k) for k in meta_keys]

    def clean(self) -> dict:
        data = super().clean() or {}
        if (data.get("share") is None) == (data.get("count") is None):
            raise ValidationError("Give either a share or a count, not both.")
        return data


@project_view(*LEAD)
def holdout(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    form = HoldoutForm(
        request.POST or None,
        initial={"share": 20, "seed": 0},
        meta_keys=selectors.document_meta_keys(project=project),
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            summary = services.holdout_reserve(
                project=project,
                fraction=data["share"] / 100 if data["share"] is not None else None,
                count=data["count"],
                group_field=data["group_field"],
                seed=data["seed"],
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(
                request,
                f"Reserved {summary.holdout} documents as the holdout "
                f"({summary.pool_labeled} labelled documents stay in the pool).",
            )
            return redirect("annotate:holdout", pk=pk)
    return render(
        request,
        "annotate/holdout.html",
        {
            "project": project,
            "form": form,
            "stats": selectors.project_stats(project=project),
            "per_label": sorted(selectors.holdout_label_counts(project=project).items()),
        },
    )


# --- export --------------------------------------------------------------------------------

EXPORT_LINKS = [
    ("jsonl", "JSON Lines"),
    ("csv", "CSV"),
    ("hf", "Hugging Face dataset (zip)"),
]


@project_view(*LEAD)
def export(request: ProjectRequest, pk: int, fmt: str) -> HttpResponse | StreamingHttpResponse:
    project = request.project
    if fmt not in exporters.EXPORT_FORMATS:
        raise Http404("Unknown export format")
    content_type = exporters.EXPORT_FORMATS[fmt][0]
    filename = exporters.export_filename(project, fmt)
    if fmt == "hf":
        archive = exporters.export_hf_zip(project)
        # Open, then delete the temporary folder at once: the open handle keeps the zip's
        # data readable until the response closes it, and nothing is left behind on disk.
        handle = archive.open("rb")
        shutil.rmtree(archive.parent, ignore_errors=True)
        return FileResponse(
            handle, as_attachment=True, filename=filename, content_type=content_type
        )
    lines = exporters.export_jsonl(project) if fmt == "jsonl" else exporters.export_csv(project)
    response = StreamingHttpResponse(lines, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
