"""The REST API: thin views over annotate's and learner's services and selectors.

Permissions are the web pages' (annotate.access): every project endpoint answers 404 to a
non-member, so a stranger cannot tell a project exists; a member whose role may not do
something gets 403; viewers only read; schema writes (labels, guidelines, settings,
imports, rounds, exports) are the lead's; annotators never see other annotators' labels
unless the project allows it. Writes run in one transaction each, so a bad request leaves
nothing half-written.
"""

from __future__ import annotations

import json
import re
import shutil
from io import BytesIO
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.http import FileResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.exceptions import ValidationError as BadRequest
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors, services
from annotate.access import ANNOTATORS, LEAD, MEMBERS, REVIEWERS, WATCHERS
from annotate.io import exporters
from annotate.io.importer import documents_import
from annotate.models import Annotation, Document, Label, Membership, Project
from api import serializers as s
from api.authentication import token_create, token_revoke, tokens_of
from api.exceptions import Conflict
from api.permissions import ReadOnlyKeys, SessionOnlyForWrites
from api.throttles import PredictThrottle, TokenCreateThrottle
from learner import export as model_export
from learner import inference
from learner import selectors as learner_selectors
from learner import services as learner_services
from learner.finalmodel import FinalModelRefused, final_model_request
from learner.models import ExportJob, Round

ERRORS = {code: s.ErrorSerializer for code in (400, 401, 403, 404, 409)}
META_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
PROJECT_ID = OpenApiParameter("pk", OpenApiTypes.INT, OpenApiParameter.PATH,
                              description="Project id")


def responses(ok: dict[Any, Any], *, throttled: bool = False) -> dict[Any, Any]:
    """The operation's success responses plus its errors; `throttled`: it may answer 429
    (api.throttles), with Retry-After."""
    return {**ok, **ERRORS, **({429: s.ErrorSerializer} if throttled else {})}


# Round numbers and guideline versions are 32-bit columns, ids 64-bit.
SMALL_KEYS = {"number", "version", "round"}


def _limit(name: str) -> int:
    return 2**31 - 1 if name in SMALL_KEYS else s.MAX_ID


def _id(value: Any, name: str) -> int:
    """A query-string id; 400 when it is not one (past the column's range included)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if not 0 < number <= _limit(name):
        raise BadRequest({name: [f"{name} must be a positive integer id."]})
    return number


def _check_path_ids(kwargs: dict[str, Any]) -> None:
    # <int:...> accepts any length of digits; an id past 64 bits cannot exist.
    if any(isinstance(value, int) and value > _limit(key) for key, value in kwargs.items()):
        raise NotFound("No such object.")


class ProjectScoped:
    """Resolves the project of `pk` for every request, after authentication: 404 for
    non-members, 403 for a role not in `read_roles` (safe methods) or `write_roles`."""

    read_roles: tuple[str, ...] = MEMBERS
    write_roles: tuple[str, ...] = LEAD
    project: Project
    membership: Membership

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        _check_path_ids(kwargs)
        self.membership = selectors.membership_for(request.user, kwargs["pk"])
        self.project = self.membership.project
        roles = self.read_roles if request.method in SAFE_METHODS else self.write_roles
        if not self.role_allowed(roles):
            raise PermissionDenied("Your role in this project does not allow this.")

    def role_allowed(self, roles: tuple[str, ...]) -> bool:
        return self.membership.role in roles

    def label_names(self) -> dict[int, str]:
        """id -> name of the project's labels, read once per request."""
        if "_label_names" not in self.__dict__:
            self._label_names = dict(self.project.labels.values_list("id", "name"))
        return self._label_names


def _label_ids(label_names: dict[int, str], values: list[str]) -> list[int]:
    """Label names (or ids, as strings) -> the project's Label ids; 400 on an unknown one."""
    by_name = {name: label_id for label_id, name in label_names.items()}
    ids = set(label_names)
    out = []
    for value in values:
        if value in by_name:
            out.append(by_name[value])
        elif value.isdigit() and int(value) in ids:
            out.append(int(value))
        else:
            raise BadRequest({"labels": [f"Unknown label {value!r} for this project."]})
    return out


# --- projects ------------------------------------------------------------------------------


class ProjectListView(generics.GenericAPIView):
    serializer_class = s.ProjectSerializer
    pagination_class = None

    @extend_schema(summary="List your projects",
                   responses=responses({200: s.ProjectSerializer(many=True)}))
    def get(self, request: Request) -> Response:
        memberships = list(selectors.projects_for(request.user))
        roles = {m.project_id: m.role for m in memberships}
        projects = [m.project for m in memberships]
        return Response(s.ProjectSerializer(projects, many=True,
                                            context={"roles": roles}).data)

    @extend_schema(summary="Create a project", request=s.ProjectCreateSerializer,
                   responses=responses({201: s.ProjectSerializer}))
    @transaction.atomic
    def post(self, request: Request) -> Response:
        data = s.ProjectCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_create(created_by=request.user, **data.validated_data)
        context = {"roles": {project.pk: Membership.Role.LEAD}}
        return Response(s.ProjectSerializer(project, context=context).data,
                        status=status.HTTP_201_CREATED)


class ProjectDetailView(ProjectScoped, APIView):
    @extend_schema(summary="Get a project",
                   parameters=[PROJECT_ID], responses=responses({200: s.ProjectSerializer}))
    def get(self, request: Request, pk: int) -> Response:
        context = {"roles": {pk: self.membership.role}}
        return Response(s.ProjectSerializer(self.project, context=context).data)

    @extend_schema(summary="Update a project's settings",
                   parameters=[PROJECT_ID], request=s.ProjectUpdateSerializer,
                   responses=responses({200: s.ProjectSerializer}))
    @transaction.atomic
    def patch(self, request: Request, pk: int) -> Response:
        data = s.ProjectUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        current = {field: getattr(self.project, field) for field in (
            "name", "description", "overlap", "annotators_see_others", "text_direction")}
        project = services.project_update(project=self.project,
                                          **{**current, **data.validated_data})
        context = {"roles": {pk: self.membership.role}}
        return Response(s.ProjectSerializer(project, context=context).data)


# --- labels --------------------------------------------------------------------------------


class LabelListView(ProjectScoped, APIView):
    @extend_schema(summary="List a project's labels", parameters=[PROJECT_ID],
                   responses=responses({200: s.LabelSerializer(many=True)}))
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.LabelSerializer(selectors.labels_of(self.project), many=True).data)

    @extend_schema(summary="Add a label", parameters=[PROJECT_ID], request=s.LabelSerializer,
                   responses=responses({201: s.LabelSerializer}))
    @transaction.atomic
    def post(self, request: Request, pk: int) -> Response:
        data = s.LabelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        label = services.label_create(
            project=self.project, name=values["name"],
            description=values.get("description", ""), colour=values.get("colour", ""),
            hotkey=values.get("hotkey"),
        )
        return Response(s.LabelSerializer(label).data, status=status.HTTP_201_CREATED)


class LabelDetailView(ProjectScoped, APIView):
    def label(self, label_id: int) -> Label:
        return get_object_or_404(Label, project=self.project, pk=label_id)

    @extend_schema(summary="Get a label",
                   parameters=[PROJECT_ID], responses=responses({200: s.LabelSerializer}))
    def get(self, request: Request, pk: int, label_id: int) -> Response:
        return Response(s.LabelSerializer(self.label(label_id)).data)

    @extend_schema(summary="Update a label", parameters=[PROJECT_ID], request=s.LabelSerializer,
                   responses=responses({200: s.LabelSerializer}))
    @transaction.atomic
    def patch(self, request: Request, pk: int, label_id: int) -> Response:
        label = self.label(label_id)
        data = s.LabelSerializer(label, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = {field: data.validated_data.get(field, getattr(label, field))
                  for field in ("name", "description", "colour", "hotkey")}
        label = services.label_update(label=label, **values)
        return Response(s.LabelSerializer(label).data)

    @extend_schema(summary="Delete a label no annotation uses",
                   parameters=[PROJECT_ID], responses=responses({204: None}))
    @transaction.atomic
    def delete(self, request: Request, pk: int, label_id: int) -> Response:
        services.label_delete(label=self.label(label_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- guidelines ----------------------------------------------------------------------------


class GuidelineListView(ProjectScoped, APIView):
    @extend_schema(summary="List the guideline versions", parameters=[PROJECT_ID],
                   responses=responses({200: s.GuidelineSerializer(many=True)}))
    def get(self, request: Request, pk: int) -> Response:
        versions = self.project.guidelines.select_related("created_by").order_by("-version")
        return Response(s.GuidelineSerializer(versions, many=True).data)

    @extend_schema(summary="Save a new guideline version",
                   parameters=[PROJECT_ID], request=s.GuidelineSerializer,
                   responses=responses({201: s.GuidelineSerializer}),
                   description="Saves a new guideline version (identical text: the current "
                               "version is returned unchanged).")
    @transaction.atomic
    def post(self, request: Request, pk: int) -> Response:
        data = s.GuidelineSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.guideline_update(
            project=self.project, text=data.validated_data["text"], user=request.user,
            note=data.validated_data.get("note", ""),
        )
        return Response(s.GuidelineSerializer(version).data, status=status.HTTP_201_CREATED)


class GuidelineDetailView(ProjectScoped, APIView):
    @extend_schema(summary="Get one guideline version",
                   parameters=[PROJECT_ID], responses=responses({200: s.GuidelineSerializer}))
    def get(self, request: Request, pk: int, version: int) -> Response:
        shown = selectors.guideline_version_get(self.project, version)
        return Response(s.GuidelineSerializer(shown).data)


# --- documents -----------------------------------------------------------------------------

DOCUMENT_FILTERS = [
    PROJECT_ID,
    OpenApiParameter("status", str, enum=list(selectors.DOCUMENT_STATUSES)),
    OpenApiParameter("label", str, description="A label name or id: documents whose final "
                                               "labels include it."),
    OpenApiParameter("q", str, description="Text contains (case-insensitive)."),
    OpenApiParameter("meta", str, many=True,
                     description="key=value on the document's metadata; repeatable."),
    OpenApiParameter("round", int, description="Round number: adds that round's query score "
                                               "and allows score_min/score_max/ordering."),
    OpenApiParameter("score_min", float),
    OpenApiParameter("score_max", float),
    OpenApiParameter("ordering", str, enum=["id", "-id", "score", "-score"]),
]


class DocumentListView(ProjectScoped, generics.ListAPIView):
    read_roles = WATCHERS
    serializer_class = s.DocumentSerializer
    queryset = Document.objects.none()
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def role_allowed(self, roles: tuple[str, ...]) -> bool:
        # Final labels are other annotators' answers: annotators read them only where the
        # project lets annotators see each other's labels.
        if self.request.method in SAFE_METHODS and self.project.annotators_see_others:
            return self.membership.role in MEMBERS
        return super().role_allowed(roles)

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if hasattr(self, "project"):
            context["label_names"] = self.label_names()
        return context

    def get_queryset(self) -> QuerySet[Document]:
        params = self.request.query_params
        label_id = None
        if params.get("label"):
            label_id = _label_ids(self.label_names(), [params["label"]])[0]
        status_filter = params.get("status", "")
        if status_filter and status_filter not in selectors.DOCUMENT_STATUSES:
            choices = ", ".join(selectors.DOCUMENT_STATUSES)
            raise BadRequest({"status": [f"Choose one of {choices}."]})
        documents = selectors.document_list(project=self.project, status=status_filter,
                                            label_id=label_id, q=params.get("q", "")[:200])
        pairs = []
        for pair in params.getlist("meta"):
            key, sep, value = pair.partition("=")
            if not sep or not META_KEY.match(key):
                raise BadRequest({"meta": ["Use meta=key=value (key: letters, digits, _ -)."]})
            pairs.append((key, value))
        documents = selectors.documents_with_meta(documents, pairs)
        ordering = params.get("ordering", "id")
        if ordering not in {"id", "-id", "score", "-score"}:
            raise BadRequest({"ordering": ["Choose id, -id, score or -score."]})
        number = params.get("round")
        if number:
            round = self._round(number)
            bounds: dict[str, float | None] = {}
            for param in ("score_min", "score_max"):
                try:
                    bounds[param] = float(params[param]) if params.get(param) else None
                except ValueError:
                    raise BadRequest({param: ["Not a number."]}) from None
            documents = learner_selectors.documents_with_round_score(documents, round, **bounds)
        elif "score" in ordering or params.get("score_min") or params.get("score_max"):
            raise BadRequest({"round": ["Score filters and ordering need ?round=N."]})
        if "score" in ordering:
            return documents.order_by(ordering.replace("score", "round_score"), "id")
        return documents.order_by(ordering)

    def _round(self, number: str) -> Round:
        return learner_selectors.round_get(self.project, _id(number, "round"))

    @extend_schema(summary="List and filter documents", parameters=DOCUMENT_FILTERS,
                   responses=responses({200: s.DocumentSerializer(many=True)}))
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(summary="Import documents", 
        parameters=[PROJECT_ID],
        request={
            "application/json": s.DocumentImportJSONSerializer,
            "multipart/form-data": s.DocumentImportFileSerializer,
        },
        responses=responses({201: s.ImportReportSerializer}),
        description="Bulk import, all or nothing: a JSON body {documents: [{text, label?, "
                    "external_id?, meta?}]} or a file upload (CSV, JSON Lines, Label Studio, "
                    "Prodigy). Any bad row rejects the whole request (400 with its line).",
    )
    # Not atomic: the importer commits in short batches of hidden rows and shows them in
    # one final step, so a long import never holds SQLite's write lock (annotate/io).
    def post(self, request: Request, pk: int) -> Response:
        if request.content_type.startswith("application/json"):
            data = s.DocumentImportJSONSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            lines = []
            for item in data.validated_data["documents"]:
                record = {"text": item["text"], **({"meta": item["meta"]} if "meta" in item
                                                    else {})}
                if item.get("label") not in (None, "", []):
                    record["label"] = item["label"]
                if item.get("external_id"):
                    record["external_id"] = item["external_id"]
                lines.append(json.dumps(record, ensure_ascii=False))
            report = documents_import(
                project=self.project, file=BytesIO("\n".join(lines).encode("utf-8")),
                fmt="jsonl", user=request.user,
            )
        else:
            data = s.DocumentImportFileSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            values = data.validated_data
            upload = values["file"]
            report = documents_import(
                project=self.project, file=upload,
                fmt=None if values["format"] == "auto" else values["format"],
                user=request.user, text_field=values["text_field"],
                label_field=values["label_field"] or "label", name=upload.name,
            )
        body = s.ImportReportSerializer(report).data | {"summary": report.summary()}
        return Response(body, status=status.HTTP_201_CREATED)


class DocumentDetailView(ProjectScoped, APIView):
    read_roles = WATCHERS

    def role_allowed(self, roles: tuple[str, ...]) -> bool:
        if self.project.annotators_see_others:
            return self.membership.role in MEMBERS
        return super().role_allowed(roles)

    @extend_schema(summary="Get a document",
                   parameters=[PROJECT_ID], responses=responses({200: s.DocumentSerializer}))
    def get(self, request: Request, pk: int, document_id: int) -> Response:
        document = get_object_or_404(Document, project=self.project, pk=document_id)
        context = {"label_names": self.label_names()}
        return Response(s.DocumentSerializer(document, context=context).data)


# --- annotations, next item, submit --------------------------------------------------------


class AnnotationListView(ProjectScoped, generics.ListAPIView):
    write_roles = ANNOTATORS
    serializer_class = s.AnnotationSerializer
    queryset = Annotation.objects.none()

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if hasattr(self, "project"):
            context["label_names"] = self.label_names()
        return context

    def get_queryset(self) -> QuerySet[Annotation]:
        params = self.request.query_params
        return selectors.annotations_visible(
            self.membership, self.request.user, annotator=params.get("annotator") or None,
            document_id=_id(params["document"], "document") if params.get("document") else None)

    @extend_schema(summary="List annotations", parameters=[
        PROJECT_ID,
        OpenApiParameter("annotator", str, description="Username: that annotator's answers "
                                                       "(annotators see only their own "
                                                       "unless the project allows)."),
        OpenApiParameter("document", int),
    ], responses=responses({200: s.AnnotationSerializer(many=True)}))
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(summary="Submit an answer", parameters=[PROJECT_ID], request=s.SubmitSerializer,
                   responses=responses({201: s.AnnotationSerializer}),
                   description="Records your answer for a document you were handed "
                               "(POST next/); the same as submit/ without the next item.")
    @transaction.atomic
    def post(self, request: Request, pk: int) -> Response:
        annotation = _submit(self, request)
        context = {"label_names": self.label_names()}
        return Response(s.AnnotationSerializer(annotation, context=context).data,
                        status=status.HTTP_201_CREATED)


def _submit(view: ProjectScoped, request: Request) -> Annotation:
    data = s.SubmitSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    values = data.validated_data
    return services.annotation_submit(
        user=request.user, project=view.project, document_id=values["document"],
        label_ids=_label_ids(view.label_names(), values["labels"]),
        duration_ms=values.get("duration_ms"),
    )


def _document_for_annotator(project: Project, document: Document | None) -> dict | None:
    if document is None:
        return None
    # The annotator's own view of a document: no final labels (they would be others'), no
    # metadata or external id that could give the answer away (as on the annotator page).
    data = dict(s.DocumentSerializer(document, context={"hide_labels": True}).data)
    data["meta"] = selectors.meta_for_annotators(document, project.labels.all())
    if not project.annotators_see_external_ids:
        data["external_id"] = ""
    return data


class NextItemView(ProjectScoped, APIView):
    write_roles = ANNOTATORS

    @extend_schema(summary="Take your next document", parameters=[PROJECT_ID], request=None,
                   responses=responses({200: s.NextItemSerializer}),
                   description="Hands you your next document and reserves it for you; "
                               "asking again returns the same one until you answer it.")
    @transaction.atomic
    def post(self, request: Request, pk: int) -> Response:
        document = services.assignment_next(user=request.user, project=self.project)
        return Response({"document": _document_for_annotator(self.project, document),
                         "done": document is None})


class SubmitView(ProjectScoped, APIView):
    write_roles = ANNOTATORS

    @extend_schema(summary="Submit an answer and take the next document",
                   parameters=[PROJECT_ID], request=s.SubmitSerializer,
                   responses=responses({201: s.SubmitResultSerializer}),
                   description="Records your answer and hands you the next document.")
    @transaction.atomic
    def post(self, request: Request, pk: int) -> Response:
        annotation = _submit(self, request)
        document = services.assignment_next(user=request.user, project=self.project)
        context = {"label_names": self.label_names()}
        return Response({
            "annotation": s.AnnotationSerializer(annotation, context=context).data,
            "next": _document_for_annotator(self.project, document),
        }, status=status.HTTP_201_CREATED)


# --- rounds --------------------------------------------------------------------------------


class RoundListView(ProjectScoped, generics.ListAPIView):
    read_roles = WATCHERS
    serializer_class = s.RoundSerializer
    queryset = Round.objects.none()

    def get_queryset(self) -> QuerySet[Round]:
        return learner_selectors.rounds_of(self.project)

    @extend_schema(summary="List training rounds", parameters=[PROJECT_ID],
                   responses=responses({200: s.RoundSerializer(many=True)}))
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(summary="Queue a training round", parameters=[PROJECT_ID], request=None,
                   responses=responses({202: s.RoundDetailSerializer}),
                   description="Queues a training round (409 if one is queued or running).")
    @transaction.atomic
    def post(self, request: Request, pk: int) -> Response:
        round = learner_services.round_request(project=self.project, requested_by=request.user)
        return Response(s.RoundDetailSerializer(round).data, status=status.HTTP_202_ACCEPTED)


class RoundDetailView(ProjectScoped, APIView):
    read_roles = WATCHERS

    @extend_schema(summary="Get a training round",
                   parameters=[PROJECT_ID], responses=responses({200: s.RoundDetailSerializer}))
    def get(self, request: Request, pk: int, number: int) -> Response:
        return Response(s.RoundDetailSerializer(
            learner_selectors.round_get(self.project, number)).data)


class RoundCancelView(ProjectScoped, APIView):
    @extend_schema(summary="Cancel a training round", parameters=[PROJECT_ID], request=None,
                   responses=responses({200: s.RoundDetailSerializer}))
    @transaction.atomic
    def post(self, request: Request, pk: int, number: int) -> Response:
        round = learner_selectors.round_get(self.project, number)
        if not round.is_active:
            raise Conflict(f"Round {number} is {round.status}; only a queued or running "
                           "round can be cancelled.")
        return Response(s.RoundDetailSerializer(learner_services.round_cancel(round=round)).data)


class RoundFinalModelView(ProjectScoped, APIView):
    @extend_schema(summary="Queue a final model searched from a round",
                   parameters=[PROJECT_ID], request=s.FinalModelRequestSerializer,
                   responses=responses({202: s.RoundDetailSerializer}),
                   description="Queues a new round that searches the hyperparameters of the "
                               "round's model (learning rate, epochs, layer decay, max "
                               "length), each trial cross-validated on the training labels, "
                               "and trains the best on all of them; it is then evaluated on "
                               "the holdout like any round. Poll the returned round; when "
                               "done its `search` lists the space and every trial. 409 when "
                               "a round is queued or running or the round has no model.")
    @transaction.atomic
    def post(self, request: Request, pk: int, number: int) -> Response:
        data = s.FinalModelRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        source = learner_selectors.round_get(self.project, number)
        try:
            round = final_model_request(round=source, requested_by=request.user,
                                        **data.validated_data)
        except FinalModelRefused as exc:
            raise Conflict(str(exc), code="no_model") from exc
        return Response(s.RoundDetailSerializer(round).data, status=status.HTTP_202_ACCEPTED)


# --- predictions ---------------------------------------------------------------------------


def _done_round(project: Project, number: int | None) -> Round:
    """The round to serve, read with the project's recording settings
    (learner.selectors.round_for_serving)."""
    round = learner_selectors.round_for_serving(project, number)
    if round is None and number is not None:
        raise NotFound("No such round")
    if round is None:
        raise Conflict("The project has no finished round yet.", code="no_model")
    if round.status != Round.Status.DONE:
        raise Conflict(f"Round {number} is {round.status}, not done.", code="no_model")
    return round


def _serving_export(project: Project, export_id: int) -> ExportJob:
    try:
        return inference.serving_export(
            learner_selectors.export_for_serving(project, export_id), export_id)
    except inference.ExportUnusable as exc:
        raise BadRequest({"export": [str(exc)]}) from None


class PredictView(ProjectScoped, APIView):
    read_roles = write_roles = WATCHERS
    throttle_classes = [PredictThrottle]

    @extend_schema(summary="Predict labels for texts",
                   parameters=[PROJECT_ID], request=s.PredictRequestSerializer,
                   responses=responses({200: s.PredictResponseSerializer}, throttled=True),
                   description="Labels and probabilities for texts from a done round's "
                               "model (default: the latest), run by PyTorch or by the "
                               "round's ONNX export; or, with `export`, from that finished "
                               "export of the project (onnx, onnx-int8 or student-int8, "
                               "the distilled student) run by onnxruntime: 400 when it "
                               "does not exist, is not done, or is an hf folder. Each "
                               "text's top label and its probability are recorded for the "
                               "lead's monitoring, with the export that served it (the "
                               "text itself only if the lead turned that on). A request "
                               "holds at "
                               "most LABELWISE_PREDICT_MAX_TEXTS texts (default 256) of "
                               "LABELWISE_PREDICT_MAX_CHARS characters in all (default "
                               "1,000,000), else 400; each user may call it "
                               "LABELWISE_PREDICT_RATE times (default 120/min), else 429 "
                               "with Retry-After.")
    def post(self, request: Request, pk: int) -> Response:
        data = s.PredictRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        texts = data.validated_data["texts"]
        export = None
        if data.validated_data.get("export") is not None:
            export = _serving_export(self.project, data.validated_data["export"])
            round, recorded = export.round, export
        else:
            round = recorded = _done_round(self.project, data.validated_data.get("round"))
        try:
            result = inference.predict(round, texts, runtime=data.validated_data["runtime"],
                                       export=export)
        except inference.NoModel as exc:
            raise Conflict(str(exc), code="no_model") from None
        learner_services.served_predictions_record(
            round=round, labels=result.labels, probabilities=result.probabilities,
            texts=texts, recording=learner_selectors.recording_of(recorded), export=export)
        return Response({
            "round": round.number,
            "runtime": export.format if export is not None else data.validated_data["runtime"],
            "export": export.pk if export is not None else None,
            "labels": result.labels,
            "task_type": self.project.task_type,
            "predictions": [
                {"labels": chosen,
                 "probabilities": {name: round_6(p) for name, p in zip(result.labels, row,
                                                                        strict=True)}}
                for chosen, row in zip(result.predicted, result.probabilities, strict=True)
            ],
        })


def round_6(value: float) -> float:
    return float(f"{float(value):.6f}")


# --- model exports -------------------------------------------------------------------------


class RoundExportListView(ProjectScoped, APIView):
    read_roles = WATCHERS

    @extend_schema(summary="List a round's model exports", parameters=[PROJECT_ID],
                   responses=responses({200: s.ExportJobSerializer(many=True)}))
    def get(self, request: Request, pk: int, number: int) -> Response:
        round = learner_selectors.round_get(self.project, number)
        jobs = learner_selectors.export_jobs_of(round, limit=None)
        return Response(s.ExportJobSerializer(jobs, many=True,
                                              context={"request": request}).data)

    @extend_schema(summary="Queue a model export",
                   parameters=[PROJECT_ID], request=s.ExportRequestSerializer,
                   responses=responses({202: s.ExportJobSerializer}),
                   description="Queues an export of the round's model (hf: safetensors "
                               "folder; onnx; onnx-int8; student-int8: a smaller student "
                               "distilled from it on the unlabelled pool, as int8 ONNX), "
                               "built by the export worker. Poll the returned job; when "
                               "done it carries download_url and metrics (holdout "
                               "macro_f1, agreement with the round's model, size_bytes, "
                               "texts_per_s at batch_size, p50_ms for one text, measured "
                               "on the worker's machine at export time).")
    @transaction.atomic
    def post(self, request: Request, pk: int, number: int) -> Response:
        data = s.ExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        round = learner_selectors.round_get(self.project, number)
        if round.status != Round.Status.DONE:
            raise Conflict(f"Round {number} is {round.status}; only done rounds export.")
        job = model_export.export_job_request(round=round, fmt=data.validated_data["format"],
                                              requested_by=request.user)
        return Response(s.ExportJobSerializer(job, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)


class ExportJobMixin(ProjectScoped):
    read_roles = WATCHERS

    def job(self, job_id: int) -> ExportJob:
        return learner_selectors.export_job_get(self.project, job_id)


class ExportJobView(ExportJobMixin, APIView):
    @extend_schema(summary="Get a model export job",
                   parameters=[PROJECT_ID], responses=responses({200: s.ExportJobSerializer}))
    def get(self, request: Request, pk: int, job_id: int) -> Response:
        return Response(s.ExportJobSerializer(self.job(job_id),
                                              context={"request": request}).data)


class DownloadMixin:
    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # A file download answers whatever the client accepts (curl sends */*, a zip
        # client may send application/zip); errors still render as JSON.
        return super().perform_content_negotiation(request, force=True)  # type: ignore[misc]


class ExportDownloadView(DownloadMixin, ExportJobMixin, APIView):
    @extend_schema(summary="Download a model export", parameters=[PROJECT_ID],
                   responses=responses({(200, "application/zip"): OpenApiTypes.BINARY}))
    def get(self, request: Request, pk: int, job_id: int) -> FileResponse:
        job = self.job(job_id)
        if job.status != ExportJob.Status.DONE:
            raise Conflict(f"The export is {job.status}, not done.", code="not_ready")
        path = Path(job.path)
        if not path.exists():
            raise NotFound("The export file is gone; request the export again.")
        return FileResponse(path.open("rb"), as_attachment=True, content_type="application/zip",
                            filename=model_export.export_job_download_name(job))


# --- data exports --------------------------------------------------------------------------


class DataExportView(DownloadMixin, ProjectScoped, APIView):
    read_roles = LEAD

    @extend_schema(summary="Export the project's documents and labels", 
        parameters=[PROJECT_ID,
                    OpenApiParameter("fmt", str, OpenApiParameter.PATH,
                                     enum=list(exporters.EXPORT_FORMATS)),
                    OpenApiParameter("all", bool, description="Include unlabelled documents.")],
        responses=responses({
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/zip"): OpenApiTypes.BINARY,
        }),
        description="The project's documents and labels: JSON Lines, CSV, or a Hugging Face "
                    "dataset (zip), as the lead's export page.",
    )
    def get(self, request: Request, pk: int, fmt: str) -> Any:
        if fmt not in exporters.EXPORT_FORMATS:
            raise NotFound(f"Unknown export format {fmt!r}.")
        labelled_only = request.query_params.get("all", "").lower() not in {"1", "true", "yes"}
        content_type = exporters.EXPORT_FORMATS[fmt][0]
        filename = exporters.export_filename(self.project, fmt)
        if fmt == "hf":
            archive = exporters.export_hf_zip(self.project, labelled_only=labelled_only)
            handle = archive.open("rb")
            shutil.rmtree(archive.parent, ignore_errors=True)
            return FileResponse(handle, as_attachment=True, filename=filename,
                                content_type=content_type)
        writer = exporters.export_jsonl if fmt == "jsonl" else exporters.export_csv
        response = StreamingHttpResponse(writer(self.project, labelled_only=labelled_only),
                                         content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


# --- review queues -------------------------------------------------------------------------

REVIEW_KINDS = ("disagreements", "label-errors", "uncertain", "flags")


class ReviewView(ProjectScoped, APIView):
    read_roles = REVIEWERS

    @extend_schema(summary="Read a review queue", 
        parameters=[PROJECT_ID,
                    OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=list(REVIEW_KINDS)),
                    OpenApiParameter("page", int), OpenApiParameter("page_size", int),
                    OpenApiParameter("threshold", float,
                                     description="label-errors: minimum model confidence.")],
        responses=responses({200: s.ReviewItemSerializer(many=True)}),
        description="One page of a review queue, in the review pages' order.",
    )
    def get(self, request: Request, pk: int, kind: str) -> Response:
        if kind not in REVIEW_KINDS:
            raise NotFound(f"Unknown review queue {kind!r}.")
        params = request.query_params
        try:
            page = max(int(params.get("page", 1)), 1)
            size = min(max(int(params.get("page_size", 20)), 1), 100)
            threshold = min(max(float(params.get("threshold",
                                                 selectors.LABEL_ERROR_THRESHOLD)), 0.0), 1.0)
        except ValueError:
            raise BadRequest({"page": ["page, page_size and threshold are numbers."]}) from None
        if kind == "disagreements":
            ids: Any = selectors.review_disagreements(project=self.project)
        elif kind == "label-errors":
            ids = selectors.review_label_errors(project=self.project, threshold=threshold)
        elif kind == "uncertain":
            ids = selectors.review_uncertain(project=self.project)
        else:
            ids = selectors.review_flagged(project=self.project)
        chosen = list(ids[(page - 1) * size: page * size])
        items = selectors.review_items(project=self.project, document_ids=chosen)
        context = {"label_names": self.label_names()}
        return Response(s.ReviewItemSerializer(items, many=True, context=context).data)


# --- tokens --------------------------------------------------------------------------------


class TokenListView(APIView):
    # A key may list its owner's keys, never create one (a leaked key must not mint more).
    permission_classes = [IsAuthenticated, ReadOnlyKeys, SessionOnlyForWrites]
    throttle_classes = [TokenCreateThrottle]

    @extend_schema(summary="List your API keys",
                   responses=responses({200: s.TokenSerializer(many=True)}))
    def get(self, request: Request) -> Response:
        return Response(s.TokenSerializer(tokens_of(request.user), many=True).data)

    @extend_schema(summary="Create an API key", request=s.TokenCreateSerializer,
                   responses=responses({201: s.TokenCreatedSerializer}, throttled=True),
                   description="Creates an API key; the key is in this response only. Each "
                               "user may create LABELWISE_TOKEN_RATE keys (default 20/hour, "
                               "the keys page included), else 429 with Retry-After.")
    @transaction.atomic
    def post(self, request: Request) -> Response:
        data = s.TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        token, key = token_create(user=request.user, name=values["name"],
                                  read_only=values["read_only"],
                                  days=values.get("expires_in_days"))
        body = s.TokenSerializer(token).data | {"key": key}
        return Response(body, status=status.HTTP_201_CREATED)


class TokenRevokeView(APIView):
    permission_classes = [IsAuthenticated, ReadOnlyKeys, SessionOnlyForWrites]

    @extend_schema(summary="Revoke an API key", responses=responses({204: None}))
    @transaction.atomic
    def delete(self, request: Request, token_id: int) -> Response:
        _check_path_ids({"token_id": token_id})
        if not token_revoke(user=request.user, token_id=token_id):
            raise NotFound("No such active key.")
        return Response(status=status.HTTP_204_NO_CONTENT)

