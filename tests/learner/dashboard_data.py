"""Data for the dashboard tests (client and browser): a project whose labels a tiny BERT can
train on, and a way to add more labels between rounds."""

from __future__ import annotations

import random

from annotate import services as annotate_services
from annotate.models import Document, Project, text_hash
from learner.models import LearnerSettings

WORDS = {
    "business": ["market", "shares", "profit", "bank", "economy", "trade"],
    "sport": ["match", "goal", "team", "coach", "league", "cup"],
    "tech": ["software", "chip", "internet", "phone", "computer", "data"],
}


def trainable_project(project: Project, model_name: str, *, documents: int = 60,
                      labelled: int = 30) -> Project:
    """Adds `documents` texts to the project, the first `labelled` with a final label, puts
    a third of the labelled ones in the holdout, and points the learner at the tiny model
    (`model_name`, its folder's name in the models directory; no automatic triggers, so
    only Train now starts rounds)."""
    rng = random.Random(3)
    label_ids = {label.name: label.pk for label in project.labels.all()}
    docs = []
    for i in range(documents):
        name = list(WORDS)[i % 3]
        text = f"{i} " + " ".join(rng.choice(WORDS[name]) for _ in range(rng.randint(3, 10)))
        final = i < labelled
        docs.append(Document(
            project=project, text=text, text_hash=text_hash(text), rand=rng.random(),
            final_labels=[label_ids[name]] if final else None,
            n_annotations=int(final), slots_taken=int(final),
        ))
    Document.objects.bulk_create(docs)
    annotate_services.holdout_reserve(project=project, fraction=0.33)
    LearnerSettings.objects.update_or_create(
        project=project,
        defaults={"model_name": model_name, "epochs": 1, "max_length": 32,
                  "batch_size": 8, "train_every_labels": 0, "train_every_minutes": 0},
    )
    return project


def label_more(project: Project, n: int) -> int:
    """Gives `n` more unlabelled pool documents their final label; returns how many."""
    label_ids = {label.name: label.pk for label in project.labels.all()}
    todo = Document.objects.filter(project=project, split=Document.Split.POOL,
                                   final_labels__isnull=True).order_by("id")[:n]
    done = 0
    for document in todo:
        name = next((w for w, words in WORDS.items()
                     if any(word in document.text for word in words)), "business")
        Document.objects.filter(pk=document.pk).update(final_labels=[label_ids[name]])
        done += 1
    return done
