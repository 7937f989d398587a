"""Domain adaptation of the encoder: a project job that continues masked-language-model
pretraining on the project's own unlabelled texts (learner.ml.adapt), after which rounds
can start from the adapted encoder (LearnerSettings.use_adapted_encoder).

The job is a Round row with trigger "adapt": it is queued, claimed, heartbeated, shows its
progress on the dashboard and can be cancelled like a training round, and it blocks other
rounds of the project while it runs. It stores no predictions and no metrics; its artifact
is the adapted encoder. ``bench/adapt.py`` measures whether it pays for its time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from annotate.models import Document, Project
from learner.base_models import base_model_folder
from learner.ml.adapt import AdaptConfig
from learner.models import LearnerSettings, Round

# How many unlabelled texts one adaptation reads (a seeded sample of a larger pool).
MAX_TEXTS = 20_000
# Optimizer steps of 16 texts: the default, and the most one request may ask for (about
# an hour on two CPU cores).
ADAPT_STEPS = 300
ADAPT_MAX_STEPS = 3_000


def adaptation_request(*, project: Project, steps: int,
                       requested_by: AbstractBaseUser | None = None) -> Round:
    """Queues an adaptation of the project's base encoder (``steps`` optimizer steps of 16
    texts); RoundBusy when a round or an adaptation is already queued or running."""
    from learner.services import learner_settings_for, round_request  # services imports this

    settings = learner_settings_for(project)
    return round_request(project=project, trigger=Round.Trigger.ADAPT,
                         requested_by=requested_by, extra={
                             "adapt": AdaptConfig(max_steps=steps,
                                                  max_length=settings.max_length,
                                                  seed=settings.seed).to_dict(),
                             "base": settings.model_name,
                         })


def adapted_encoder(project: Project, settings: LearnerSettings) -> str | None:
    """The folder of the project's latest finished adaptation of its current base model,
    when the lead turned its use on; else None (rounds use the base model)."""
    if not settings.use_adapted_encoder:
        return None
    latest = (
        Round.objects.filter(project=project, trigger=Round.Trigger.ADAPT,
                             status=Round.Status.DONE)
        .order_by("-number").values_list("artifact_path", "config").first()
    )
    if latest is None or not latest[0]:
        return None
    path, config = latest
    return path if (config or {}).get("base", "") == settings.model_name else None


def run_adaptation(round: Round, progress: Callable[..., None]) -> dict[str, Any]:
    from learner import pipeline
    from learner.ml.adapt import adapt_encoder

    progress("reading texts")
    texts = list(
        Document.objects.filter(project_id=round.project_id, split=Document.Split.POOL)
        .order_by("rand").values_list("text", flat=True)[:MAX_TEXTS]
    )
    config = AdaptConfig(**round.config["adapt"])
    folder = pipeline.artifact_dir(round)
    # The base model's name, resolved again here: a round never loads a path it was given.
    base = base_model_folder(round.config.get("base") or "")
    report = adapt_encoder(base, texts, folder, config=config,
                           progress=lambda phase, step, total: progress(phase, step, total))
    return {"artifact_path": str(folder), "fit": {"adapt": report},
            "timings": {"adapt_s": report["seconds"], "texts": report["texts"]}}
