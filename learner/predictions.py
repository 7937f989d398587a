"""The learner's answer to `annotate.providers.PredictionSource`: the rounds' predictions
as the queue, the documents list, the review queues and a document's page read them.

Registered in `learner.apps.LearnerConfig.ready`, so `annotate` reads the learner's
tables without importing the learner.
"""

from __future__ import annotations

from django.db.models import F, FilteredRelation, Q, QuerySet

from annotate.models import Document, Project
from annotate.providers import QueueSettings
from learner.models import LearnerSettings, Prediction, Round


class LearnerPredictions:
    def latest_round_id(self, project: Project) -> int | None:
        return (
            Round.objects.with_models().filter(project=project, status=Round.Status.DONE)
            .order_by("-number").values_list("id", flat=True).first()
        )

    def queue_settings(self, project: Project) -> QueueSettings | None:
        row = (
            LearnerSettings.objects.filter(project=project)
            .values_list("random_share", "show_suggestions", "suggestion_threshold").first()
        )
        if row is None:
            return None
        share, show, threshold = row
        return QueueSettings(random_share=share, show_suggestions=bool(show),
                             suggestion_threshold=float(threshold))

    def order_by_round(self, documents: QuerySet[Document], *, round_id: int,
                       by_rank: bool) -> QuerySet[Document]:
        # A join on the predictions, not a subquery per document: the database walks
        # prediction_rank_idx / prediction_queue_idx in order and stops at the first open
        # document instead of sorting the pool.
        if by_rank:
            return documents.filter(
                predictions__round_id=round_id, predictions__rank__isnull=False
            ).order_by("predictions__rank")
        # A prediction without a score belongs to a document that was labelled when the
        # round ran (kept for the review pages); if an undo reopened it, the random order
        # finds it.
        return documents.filter(
            predictions__round_id=round_id, predictions__score__isnull=False
        ).order_by("-predictions__score", "-predictions__document_id")

    def with_round_columns(self, documents: QuerySet[Document], *,
                           round_id: int) -> QuerySet[Document]:
        return documents.annotate(
            latest=FilteredRelation("predictions", condition=Q(predictions__round_id=round_id))
        ).annotate(
            predicted_labels=F("latest__labels"), confidence=F("latest__confidence"),
            score=F("latest__score"),
        )

    def predictions(self, *, round_id: int) -> QuerySet[Prediction]:
        return Prediction.objects.filter(round_id=round_id)

    def document_predictions(self, document: Document, *, limit: int
                             ) -> list[tuple[int, list[int], float, float | None, int | None]]:
        return list(
            Prediction.objects.filter(document=document, round__in=Round.objects.with_models())
            .order_by("-round__number")
            .values_list("round__number", "labels", "confidence", "score", "rank")[:limit]
        )
