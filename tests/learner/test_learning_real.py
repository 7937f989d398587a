"""The real base model on real data: more labels, a better second round."""

from __future__ import annotations

import io
import json
import random

import pytest

from annotate import services as annotate_services
from annotate.io.importer import documents_import
from learner import services
from learner.models import LearnerSettings, Round
from learner.worker import Worker
from tests.conftest import shared_datasets_dir

pytestmark = pytest.mark.slow


def test_round_two_beats_round_one_on_bbc_news(project, lead):
    path = shared_datasets_dir() / "bbc_news.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is missing (set LABELWISE_DATASETS to the shared datasets)")
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    rows = random.Random(0).sample(rows, 420)
    # 120 labelled up front: 90 become the holdout, 30 the first round's training set.
    data = "\n".join(json.dumps({"text": r["text"], "_gold": r["label"],
                                 **({"label": r["label"]} if i < 120 else {})})
                     for i, r in enumerate(rows))
    for name in sorted({r["label"] for r in rows}):
        if not project.labels.filter(name=name).exists():
            annotate_services.label_create(project=project, name=name)
    documents_import(project=project, file=io.BytesIO(data.encode()), fmt="jsonl", user=lead)
    annotate_services.holdout_reserve(project=project, fraction=0.75, seed=0)
    LearnerSettings.objects.create(project=project, epochs=3, max_length=64,
                                   train_every_labels=0, random_share=0.0)
    worker = Worker(name="slow")

    services.round_request(project=project)
    worker.run_once()
    # The annotator answers the 120 documents the first model is least sure about.
    by_name = {label.name: label.pk for label in project.labels.all()}
    for _ in range(120):
        document = annotate_services.assignment_next(user=lead, project=project)
        annotate_services.annotation_submit(user=lead, project=project,
                                            document_id=document.pk,
                                            label_ids=[by_name[document.meta["_gold"]]])
    services.round_request(project=project)
    worker.run_once()

    first, second = Round.objects.filter(project=project).order_by("number")
    assert first.status == second.status == "done", second.traceback
    assert second.n_train == first.n_train + 120
    assert second.metrics["macro_f1"] > first.metrics["macro_f1"] + 0.05, (
        first.metrics["macro_f1"], second.metrics["macro_f1"])
