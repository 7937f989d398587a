"""The model side's tables: a project's learner settings, the Round (the job row), the
per-document predictions of each round, and the model-export jobs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from annotate.models import Document, GuidelineVersion, Project
from learner.base_models import validate_base_model_name
from learner.ml.config import TrainConfig


class LearnerSettings(models.Model):
    """How a project's model is trained and how its queue is ordered."""

    class Mode(models.TextChoices):
        AUTO = "auto", "Automatic (the ladder: linear head, then fine-tuning when it wins)"
        FULL = "full", "Full fine-tuning"
        HEAD = "head", "Head only (frozen encoder)"
        GRADUAL = "gradual", "Gradual unfreezing"
        LORA = "lora", "LoRA"

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="learner_settings"
    )
    model_name = models.CharField(
        max_length=200, blank=True, validators=[validate_base_model_name],
        help_text="A folder under LABELWISE_MODELS_DIR, by name; blank = all-MiniLM-L6-v2.",
    )
    # The training settings default to TrainConfig's defaults (a plain dataclass, no ML
    # stack), so a new project's first round trains as TrainConfig documents; their ranges
    # are learner.ml.config.BOUNDS.
    mode = models.CharField(max_length=10, choices=Mode.choices, default=TrainConfig.mode)
    # learner.ml.strategies.DEFAULT_STRATEGY, spelled out so the web app need not import
    # the ML stack: least_confidence measured best in fast mode across the shared datasets
    # (DEFAULT_STRATEGY_MEASUREMENTS there).
    strategy = models.CharField(max_length=30, default="least_confidence")
    random_share = models.FloatField(default=0.1, help_text="Share of random picks, 0-1.")
    max_length = models.PositiveIntegerField(default=TrainConfig.max_length)
    epochs = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="Blank: as many as the label count needs, early-stopped on validation.",
    )
    learning_rate = models.FloatField(default=TrainConfig.learning_rate)
    batch_size = models.PositiveSmallIntegerField(default=TrainConfig.batch_size)
    train_every_labels = models.PositiveIntegerField(
        default=50, help_text="Start a round after this many new labels (0 = never)."
    )
    train_every_minutes = models.PositiveIntegerField(
        default=0, help_text="Start a round this often when there are new labels (0 = never)."
    )
    show_suggestions = models.BooleanField(
        default=False, help_text="Show annotators the latest model's suggestion."
    )
    warm_start = models.BooleanField(
        default=TrainConfig.warm_start,
        help_text="Fine-tuning starts from the previous round's model, with fewer steps.",
    )
    use_adapted_encoder = models.BooleanField(
        default=False,
        help_text="Rounds start from the encoder of the latest domain adaptation.",
    )
    suggestion_threshold = models.FloatField(
        default=0.6,
        help_text="Show a suggestion only when the model's calibrated confidence reaches "
                  "this (0-1).",
    )
    seed = models.PositiveIntegerField(default=TrainConfig.seed)
    # Monitoring: what the predictions endpoint records, and when production counts as
    # drifted from the holdout (learner.ml.monitoring).
    record_predictions = models.BooleanField(
        default=True,
        help_text="Record every prediction the API serves: round, top label, confidence.",
    )
    record_texts = models.BooleanField(
        default=False,
        help_text="Record the predicted texts too (needed to queue them for annotation).",
    )
    drift_threshold = models.FloatField(
        default=0.25,
        help_text="A day's predictions drift when the population stability index of their "
                  "confidences or predicted labels against the holdout's reaches this.",
    )
    drift_queue = models.BooleanField(
        default=False,
        help_text="On drift, add the day's least confident recorded texts to the pool "
                  "(tagged source=production) and queue a round.",
    )
    drift_queue_size = models.PositiveIntegerField(
        default=50, help_text="Texts added to the pool per drift alert, least confident first."
    )
    # Metadata fields whose values the holdout is broken down by, every round.
    group_fields = models.JSONField(default=list, blank=True)
    group_margin = models.FloatField(
        default=0.1,
        help_text="Flag a group whose holdout macro-F1 is more than this below the "
                  "whole holdout's.",
    )

    def __str__(self) -> str:
        return f"Learner settings of {self.project}"


class RoundQuerySet(models.QuerySet):
    def with_models(self) -> RoundQuerySet:
        """Rounds that train a classifier and store predictions: not the encoder
        adaptations, which share the job row (their result is an encoder)."""
        return self.exclude(trigger=Round.Trigger.ADAPT)


class Progressed:
    """What a job row with `status`, `step` and `total_steps` (a round, an export) shows of
    its progress; the class names its ACTIVE statuses."""

    ACTIVE: tuple[str, ...]
    status: str
    step: int
    total_steps: int

    @property
    def percent(self) -> float:
        return round(100 * self.step / self.total_steps, 1) if self.total_steps else 0.0

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class Round(Progressed, models.Model):
    """One training round of a project's model, and the job row the worker claims.

    Status: queued (waiting for a worker) -> running (claimed; heartbeat_at moves while it
    works) -> done | failed | cancelled. A running round whose heartbeat stops is failed or
    re-queued by the next worker that looks.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Train now"
        LABELS = "labels", "New labels"
        TIMER = "timer", "Timer"
        COLD_START = "cold_start", "Cold start (no model yet)"
        ADAPT = "adapt", "Domain adaptation (encoder only)"
        DRIFT = "drift", "Drift in production"
        # A hyperparameter search over a finished round's best rung (learner.finalmodel);
        # its result is an ordinary round: holdout metrics, predictions, artifact.
        FINAL = "final", "Final model (hyperparameter search)"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    config = models.JSONField(default=dict, blank=True)
    # Progress, written by the worker as it goes.
    phase = models.CharField(max_length=30, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    eta_seconds = models.FloatField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # What it trained on and what came out.
    n_train = models.PositiveIntegerField(default=0)
    n_holdout = models.PositiveIntegerField(default=0)
    data_fingerprint = models.CharField(max_length=64, blank=True)
    guideline_version = models.ForeignKey(
        GuidelineVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metrics = models.JSONField(null=True, blank=True)
    # The fit itself: the rung the ladder kept, every candidate's validation score,
    # calibration (temperature, ECE before and after), the validation split's size.
    fit = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    # What production predictions are compared with (learner.ml.monitoring.profile_of on
    # the holdout): its confidence histogram and predicted-label counts.
    holdout_profile = models.JSONField(default=dict, blank=True)
    # Holdout metrics per value of the lead's group fields (monitoring.group_metrics).
    groups = models.JSONField(default=dict, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RoundQuerySet.as_manager()

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="round_number_unique"),
            # Never two queued-or-running rounds for one project, whatever races.
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_round_per_project",
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="round_queue_idx")]

    def __str__(self) -> str:
        return f"{self.project} round {self.number} ({self.status})"


class Prediction(models.Model):
    """A round's output for one document: predicted label(s), the full probability vector
    (in the order of `Round.config["labels"]`), and the query strategy's score."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="predictions")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="predictions")
    labels = models.JSONField(help_text="Predicted Label ids.")
    probs = models.JSONField()
    confidence = models.FloatField()
    score = models.FloatField(
        null=True, blank=True,
        help_text="Strategy score; higher = ask first. Null: the document was labelled when "
                  "the round ran (its prediction serves the review queues).",
    )
    rank = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Position in the strategy's batch selection (0 = ask first); null outside "
                  "the batch. The queue hands out the batch in this order, then follows "
                  "the scores.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["round", "document"], name="one_prediction_per_round")
        ]
        # The queue walks this index from the top score down and stops at the first open
        # document; the document id settles ties (a degenerate model, a cold start) so
        # that the walk never has to sort a tied group, which can be the whole pool.
        indexes = [
            models.Index(fields=["round", "score", "document"], name="prediction_queue_idx"),
            # The batch selection: a few dozen rows per round, walked in pick order.
            models.Index(fields=["round", "rank"], name="prediction_rank_idx",
                         condition=Q(rank__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"Prediction of round {self.round_id} for document {self.document_id}"


class ServedPrediction(models.Model):
    """One text the predictions endpoint answered: which round's model, its top label and
    that label's probability; when a finished export served it instead of the round's own
    model (a distilled student, say), which one. The text itself only when the lead turned
    recording texts on (LearnerSettings.record_texts). Written in one insert per request."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="served")
    export = models.ForeignKey("ExportJob", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="served")
    label = models.CharField(max_length=200)
    confidence = models.FloatField()
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # The dashboard's per-day counts and the drift check's day of one round.
            models.Index(fields=["round", "created_at"], name="served_round_day_idx"),
            models.Index(fields=["project", "created_at"], name="served_project_day_idx"),
        ]

    def __str__(self) -> str:
        return f"Prediction served by round {self.round_id}: {self.label}"


class DriftAlert(models.Model):
    """A day on which a round's production predictions drifted from its holdout: the
    project is marked while an alert is open (not cleared by a lead). At most one per
    round and day, so a cleared alert stays cleared for that day."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="drift_alerts")
    day = models.DateField()
    # learner.ml.monitoring.Drift.as_dict() at the check that raised it.
    drift = models.JSONField(default=dict)
    # Texts added to the pool for annotation, and the round queued after them.
    queued_documents = models.PositiveIntegerField(default=0)
    queued_round = models.ForeignKey(Round, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["round", "day"], name="one_drift_alert_per_day")
        ]

    def __str__(self) -> str:
        return f"Drift of round {self.round_id} on {self.day}"


class ExportJob(Progressed, models.Model):
    """One export of a finished round's model, and the job row the export worker claims.

    Status: queued -> running (claimed) -> done (path holds the zip) | failed (error).
    While running, the worker writes its progress onto the row as a round's does: the
    phase (distilling epoch i/n, exporting, quantizing, measuring), steps done of the
    phase's total, and the estimated seconds left."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Format(models.TextChoices):
        HF = "hf", "Hugging Face folder (safetensors)"
        ONNX = "onnx", "ONNX (float32)"
        ONNX_INT8 = "onnx-int8", "ONNX, int8-quantized"
        STUDENT_INT8 = "student-int8", "Distilled student, ONNX int8"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="export_jobs")
    format = models.CharField(max_length=20, choices=Format.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    path = models.CharField(max_length=500, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    # Progress, written by the export worker as it goes (learner.export.ExportProgress).
    phase = models.CharField(max_length=40, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    eta_seconds = models.FloatField(null=True, blank=True)
    # Seconds each finished phase took, in order: [{"phase": ..., "seconds": ...}].
    phases = models.JSONField(default=list, blank=True)
    # What the exported model costs and how good it is, measured by the worker at export
    # time on its own machine (learner.export.artifact_metrics): macro_f1 and agreement
    # (with the round's model) on the holdout, size_bytes of the weights, texts_per_s at
    # batch_size and p50_ms for one text. Empty until done.
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table keeps the name it had when the api app owned the model.
        db_table = "api_exportjob"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"], name="export_queue_idx")]

    def __str__(self) -> str:
        return f"{self.format} export of {self.round} ({self.status})"
