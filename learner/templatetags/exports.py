"""`{% round_exports round as jobs %}`: a round's model exports, for the round page."""

from __future__ import annotations

from django import template

from learner.models import ExportJob, Round

register = template.Library()


@register.simple_tag
def round_exports(round: Round) -> list[ExportJob]:
    return list(ExportJob.objects.filter(round=round).order_by("-created_at")[:20])
