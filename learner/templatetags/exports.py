"""`{% round_exports round as jobs %}`: a round's model exports, for the round page; and
the filters its exports panel shows their progress with."""

from __future__ import annotations

from collections.abc import Iterable

from django import template

from learner import selectors
from learner.models import ExportJob, Round
from learner.views import duration_text

register = template.Library()


@register.simple_tag
def round_exports(round: Round) -> list[ExportJob]:
    return selectors.export_jobs_of(round)


@register.filter
def any_active(jobs: Iterable[ExportJob]) -> bool:
    """Whether one of `jobs` is queued or running: the panel polls itself while one is."""
    return any(job.is_active for job in jobs)


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as the pages write a duration ('1 min 15 s'); '' when unknown."""
    return duration_text(seconds)
