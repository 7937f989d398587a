"""What goes in and out of the API. Serializers validate and shape; they never write
(the views call services for that)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate.models import Annotation, Document, GuidelineVersion, Label, Project
from api.authentication import MAX_DAYS
from api.models import ApiToken
from learner.finalmodel import (
    FINAL_BUDGET_MINUTES,
    FINAL_MAX_BUDGET_MINUTES,
    FINAL_MAX_TRIALS,
    FINAL_MIN_BUDGET_MINUTES,
    FINAL_MIN_TRIALS,
    FINAL_TRIALS,
)
from learner.models import ExportJob, Round

# Ids are 64-bit in the database; a larger number must be a 400/404, never an overflow.
MAX_ID = 2**63 - 1

# --- projects, labels, guidelines ----------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "description", "task_type", "overlap",
                  "annotators_see_others", "text_direction", "created_at", "role"]
        read_only_fields = fields

    def get_role(self, project: Project) -> str | None:
        return self.context.get("roles", {}).get(project.pk)


# The task types a project can be created with and a model predicts for: one choice set,
# so the schema names one enum for it.
AVAILABLE_TASK_TYPES = [Project.TaskType.SINGLE_LABEL, Project.TaskType.MULTI_LABEL]


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    task_type = serializers.ChoiceField(
        choices=AVAILABLE_TASK_TYPES, default=Project.TaskType.SINGLE_LABEL,
    )
    overlap = serializers.IntegerField(min_value=1, max_value=10, default=1)
    labels = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list,
        max_length=200,
    )
    guidelines = serializers.CharField(required=False, allow_blank=True, default="")


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    overlap = serializers.IntegerField(min_value=1, max_value=10, required=False)
    annotators_see_others = serializers.BooleanField(required=False)
    text_direction = serializers.ChoiceField(choices=["ltr", "rtl"], required=False)


class LabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "name", "description", "colour", "hotkey", "order"]
        read_only_fields = ["id", "order"]
        extra_kwargs = {
            "description": {"required": False},
            "colour": {"required": False},
            "hotkey": {"required": False},
        }


class GuidelineSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.get_username", read_only=True)

    class Meta:
        model = GuidelineVersion
        fields = ["version", "text", "note", "created_by", "created_at"]
        read_only_fields = ["version", "created_by", "created_at"]
        # The text is the point of a new version (blank clears the guidelines).
        extra_kwargs = {"note": {"required": False},
                        "text": {"required": True, "allow_blank": True}}


# --- documents -----------------------------------------------------------------------------


class DocumentSerializer(serializers.ModelSerializer):
    final_labels = serializers.SerializerMethodField()
    score = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = ["id", "external_id", "text", "meta", "split", "final_labels",
                  "n_annotations", "created_at", "score"]
        read_only_fields = fields

    @extend_schema_field({"type": "number", "nullable": True,
                          "description": "The ?round=N query score (higher: ask sooner)."})
    def get_score(self, document: Document) -> float | None:
        return getattr(document, "round_score", None)

    @extend_schema_field({"type": "array", "items": {"type": "string"}, "nullable": True})
    def get_final_labels(self, document: Document) -> list[str] | None:
        if document.final_labels is None or self.context.get("hide_labels"):
            return None
        names = self.context.get("label_names", {})
        return [names.get(i, str(i)) for i in document.final_labels]


class DocumentItemSerializer(serializers.Serializer):
    text = serializers.CharField(allow_blank=False, trim_whitespace=False)
    label = serializers.JSONField(
        required=False, allow_null=True,
        help_text="A label name, or a list of names (multi-label). Optional.",
    )
    external_id = serializers.CharField(required=False, allow_blank=True, max_length=200)
    meta = serializers.DictField(required=False)


class DocumentImportJSONSerializer(serializers.Serializer):
    documents = DocumentItemSerializer(many=True, allow_empty=False, max_length=100_000)


class DocumentImportFileSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(
        choices=["auto", "csv", "jsonl", "labelstudio", "prodigy"], default="auto"
    )
    text_field = serializers.CharField(max_length=100, default="text")
    label_field = serializers.CharField(max_length=100, default="label", allow_blank=True)


class ImportReportSerializer(serializers.Serializer):
    format = serializers.CharField(source="fmt")
    created = serializers.IntegerField()
    labelled = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    duplicates_in_file = serializers.IntegerField()
    duplicates_existing = serializers.IntegerField()
    duplicate_lines = serializers.ListField(child=serializers.IntegerField())
    summary = serializers.CharField()


# --- annotations and the queue -------------------------------------------------------------


class AnnotationSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(
        source="annotator.get_username", read_only=True, allow_null=True,
        help_text="Null for an imported label: see imported_from.",
    )
    imported_from = serializers.CharField(
        read_only=True, help_text="The file an imported label came from (empty otherwise).",
    )
    labels = serializers.SerializerMethodField()
    guideline_version = serializers.IntegerField(
        source="guideline_version.version", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Annotation
        fields = ["id", "document", "annotator", "labels", "guideline_version", "source",
                  "imported_from", "duration_ms", "created_at"]
        read_only_fields = fields

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_labels(self, annotation: Annotation) -> list[str]:
        names = self.context.get("label_names", {})
        return [names.get(i, str(i)) for i in annotation.labels]


class SubmitSerializer(serializers.Serializer):
    document = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    labels = serializers.ListField(
        child=serializers.CharField(max_length=100), allow_empty=False, max_length=200,
        help_text="Label names (or ids).",
    )
    duration_ms = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False,
                                           allow_null=True)


class NextItemSerializer(serializers.Serializer):
    document = DocumentSerializer(allow_null=True)
    done = serializers.BooleanField(help_text="True when the queue has nothing left for you.")


class SubmitResultSerializer(serializers.Serializer):
    annotation = AnnotationSerializer()
    next = DocumentSerializer(allow_null=True)


# --- rounds, predictions, exports ----------------------------------------------------------


class RoundSerializer(serializers.ModelSerializer):
    guideline_version = serializers.IntegerField(
        source="guideline_version.version", read_only=True, allow_null=True, default=None
    )
    requested_by = serializers.CharField(
        source="requested_by.get_username", read_only=True, allow_null=True, default=None
    )
    percent = serializers.FloatField(read_only=True)

    class Meta:
        model = Round
        fields = ["number", "status", "trigger", "requested_by", "phase", "step",
                  "total_steps", "percent", "eta_seconds", "cancel_requested", "n_train",
                  "n_holdout", "data_fingerprint", "guideline_version", "created_at",
                  "started_at", "finished_at", "error"]
        read_only_fields = fields


class RoundDetailSerializer(RoundSerializer):
    search = serializers.SerializerMethodField(
        help_text="A final model's hyperparameter search: space, every trial (values, fold "
                  "scores, mean, pruned, seconds), the pick. Null for other rounds.")

    class Meta(RoundSerializer.Meta):
        fields = [*RoundSerializer.Meta.fields, "config", "metrics", "groups", "timings",
                  "search"]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_search(self, round: Any) -> dict[str, Any] | None:
        return (round.fit or {}).get("search")


class FinalModelRequestSerializer(serializers.Serializer):
    trials = serializers.IntegerField(
        default=FINAL_TRIALS, min_value=FINAL_MIN_TRIALS, max_value=FINAL_MAX_TRIALS,
        help_text="Configurations to try, the round's own included.")
    budget_minutes = serializers.IntegerField(
        default=FINAL_BUDGET_MINUTES, min_value=FINAL_MIN_BUDGET_MINUTES,
        max_value=FINAL_MAX_BUDGET_MINUTES,
        help_text="No trial starts after this many minutes.")


# One text's characters; LABELWISE_PREDICT_MAX_CHARS bounds the request's total.
PREDICT_TEXT_MAX_CHARS = 100_000


def _predict_texts_field() -> serializers.ListField:
    # Built per serializer from the settings (not once at import), so the schema and the
    # check both show the limit the server runs with.
    most = settings.LABELWISE_PREDICT_MAX_TEXTS
    return serializers.ListField(
        child=serializers.CharField(max_length=PREDICT_TEXT_MAX_CHARS, allow_blank=True,
                                    trim_whitespace=False),
        allow_empty=False, max_length=most,
        error_messages={"max_length": f"At most {most:,} texts per request (the server's "
                                      "LABELWISE_PREDICT_MAX_TEXTS); send more in batches."},
        help_text=f"At most {most:,} texts, each of at most {PREDICT_TEXT_MAX_CHARS:,} "
                  f"characters and {settings.LABELWISE_PREDICT_MAX_CHARS:,} in all.",
    )


class PredictRequestSerializer(serializers.Serializer):
    texts = serializers.ListField(child=serializers.CharField())  # replaced in get_fields
    round = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2**31 - 1,
        help_text="Round number; default: the latest done round.",
    )
    runtime = serializers.ChoiceField(
        choices=["pytorch", "onnx", "onnx-int8"], default="pytorch",
        help_text="pytorch: the round's own model. onnx / onnx-int8: the round's finished "
                  "export of that format (409 until one is exported).",
    )
    export = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_ID,
        help_text="Id of a finished export of this project (onnx, onnx-int8 or "
                  "student-int8) to serve the texts with onnxruntime instead of a round's "
                  "model; not with round or runtime.",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["texts"] = _predict_texts_field()
        return fields

    def validate_texts(self, texts: list[str]) -> list[str]:
        most = settings.LABELWISE_PREDICT_MAX_CHARS
        total = sum(len(text) for text in texts)
        if total > most:
            raise serializers.ValidationError(
                f"The texts have {total:,} characters in all; at most {most:,} per request "
                "(the server's LABELWISE_PREDICT_MAX_CHARS). Send them in smaller batches.",
                code="too_long")
        return texts

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("export") is not None and (
                data.get("round") is not None or "runtime" in self.initial_data):
            raise serializers.ValidationError(
                {"export": ["An export names its round and runtime: send it without "
                            "round and runtime."]}, code="conflict")
        return data


class PredictionItemSerializer(serializers.Serializer):
    labels = serializers.ListField(child=serializers.CharField())
    probabilities = serializers.DictField(child=serializers.FloatField())


class PredictResponseSerializer(serializers.Serializer):
    round = serializers.IntegerField()
    runtime = serializers.CharField(
        help_text="What served the texts: pytorch, onnx, onnx-int8, or the named export's "
                  "format (student-int8 for a distilled student).")
    export = serializers.IntegerField(allow_null=True,
                                      help_text="The export that served them, if one did.")
    labels = serializers.ListField(child=serializers.CharField())
    task_type = serializers.ChoiceField(choices=AVAILABLE_TASK_TYPES)
    predictions = PredictionItemSerializer(many=True)


class ExportRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=ExportJob.Format.choices)


class ExportJobSerializer(serializers.ModelSerializer):
    round = serializers.IntegerField(source="round.number", read_only=True)
    percent = serializers.FloatField(read_only=True,
                                     help_text="step of total_steps in the current phase, %.")
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ExportJob
        fields = ["id", "round", "format", "status", "phase", "step", "total_steps",
                  "percent", "eta_seconds", "phases", "size_bytes", "metrics", "error",
                  "created_at", "started_at", "finished_at", "download_url"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, job: ExportJob) -> str | None:
        if job.status != ExportJob.Status.DONE:
            return None
        url = reverse("api:export-download", args=[job.round.project_id, job.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url


# --- review queues -------------------------------------------------------------------------


class ReviewAnswerSerializer(serializers.Serializer):
    annotator = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField())


class ReviewItemSerializer(serializers.Serializer):
    document = DocumentSerializer()
    answers = ReviewAnswerSerializer(many=True)
    final = serializers.ListField(child=serializers.CharField())
    predicted = serializers.ListField(child=serializers.CharField())
    confidence = serializers.FloatField(allow_null=True)
    open_flags = serializers.ListField(child=serializers.CharField())

    def to_representation(self, item: Any) -> dict[str, Any]:
        return {
            "document": DocumentSerializer(item.document, context=self.context).data,
            "answers": [{"annotator": a.annotator, "labels": [lb.name for lb in a.labels]}
                        for a in item.answers],
            "final": [lb.name for lb in item.final],
            "predicted": [lb.name for lb in item.predicted],
            "confidence": item.confidence,
            "open_flags": [flag.comment for flag in item.flags],
        }


# --- tokens --------------------------------------------------------------------------------


class TokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "read_only", "created_at", "expires_at",
                  "last_used_at", "revoked_at"]
        read_only_fields = fields


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    read_only = serializers.BooleanField(
        default=False, help_text="The key may only read: any other method is refused (403).")
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=MAX_DAYS, required=False, allow_null=True,
        help_text="The key stops working after this many days; omitted: until revoked.")


class TokenCreatedSerializer(TokenSerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "key"]
        read_only_fields = fields


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(required=False)
    line = serializers.IntegerField(required=False, allow_null=True)
