"""What the annotate side reads from a model, through one slot the model side fills.

The queue, the documents list, the review queues and a document's page show a model's
predictions, but `annotate` sits below `learner` and never imports it. The learner app
registers a `PredictionSource` at start-up (`learner.apps.LearnerConfig.ready`); until
then, or in a deployment without a learner, `NoPredictions` answers: no round, no
scores, so the queue falls back to its random import order.

Everything here hands back querysets, not lists, so the callers' queries stay one
database query each: the queue's round order is a join the database walks along the
predictions' (round, rank) and (round, score, document) indexes and stops at the first
open document, as it did when the join was written in `annotate.selectors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from django.db.models import QuerySet

from annotate.models import Document, Project


@dataclass(frozen=True)
class QueueSettings:
    """The lead's settings that shape the queue and the annotator page."""

    random_share: float = 0.0
    show_suggestions: bool = False
    suggestion_threshold: float = 0.0


class PredictionSource(Protocol):
    """The model side, as the annotate side sees it. A "round" here is one finished set of
    predictions over a project's documents, named by an id."""

    def latest_round_id(self, project: Project) -> int | None:
        """The latest finished round whose predictions the pages should show."""
        ...

    def queue_settings(self, project: Project) -> QueueSettings | None:
        """The project's queue settings, None when the lead never saved any."""
        ...

    def order_by_round(self, documents: QuerySet[Document], *, round_id: int,
                       by_rank: bool) -> QuerySet[Document]:
        """`documents` narrowed to those the round ranked (`by_rank`: its batch selection,
        in pick order) or scored (highest score first, then the higher document id)."""
        ...

    def with_round_columns(self, documents: QuerySet[Document], *,
                           round_id: int) -> QuerySet[Document]:
        """`documents` annotated with the round's `predicted_labels` (Label ids),
        `confidence` and `score`, None where the round has no prediction; one LEFT JOIN,
        so the caller can filter and sort on the three."""
        ...

    def predictions(self, *, round_id: int) -> QuerySet:
        """The round's prediction rows. Fields the annotate side reads: `document` (a
        foreign key to Document), `labels` (Label ids), `confidence`, `score`, `rank`."""
        ...

    def document_predictions(self, document: Document, *, limit: int
                             ) -> list[tuple[int, list[int], float, float | None, int | None]]:
        """Every round's prediction of one document, newest round first, at most `limit`:
        (round number, Label ids, confidence, score, rank)."""
        ...


class NoPredictions:
    """The source before a model side registers one: nothing has been predicted."""

    def latest_round_id(self, project: Project) -> int | None:
        return None

    def queue_settings(self, project: Project) -> QueueSettings | None:
        return None

    def order_by_round(self, documents: QuerySet[Document], *, round_id: int,
                       by_rank: bool) -> QuerySet[Document]:
        return documents.none()

    def with_round_columns(self, documents: QuerySet[Document], *,
                           round_id: int) -> QuerySet[Document]:
        raise LookupError("No prediction source is registered, so there is no round.")

    def predictions(self, *, round_id: int) -> QuerySet:
        raise LookupError("No prediction source is registered, so there is no round.")

    def document_predictions(self, document: Document, *, limit: int
                             ) -> list[tuple[int, list[int], float, float | None, int | None]]:
        return []


_source: PredictionSource = NoPredictions()


def prediction_source() -> PredictionSource:
    return _source


def prediction_source_set(source: PredictionSource) -> None:
    """Registers the model side's source (once, from an AppConfig.ready)."""
    global _source
    _source = source
