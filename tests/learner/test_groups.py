"""Holdout metrics per metadata group: a real round of the tiny BERT on a project where one
source's texts are labelled at random (no model can learn them), so that group must come
out flagged, on the round, its page, the API and the model card."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from annotate import services as annotate_services
from annotate.models import Document, text_hash
from learner import services
from learner.export import _card_markdown, model_card
from learner.models import LearnerSettings, Round
from learner.worker import Worker
from tests.learner.dashboard_data import WORDS


@pytest.fixture
def grouped_round(project, tiny_model_name, settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.LABELWISE_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.DATA_DIR = tmp_path
    rng = random.Random(11)
    ids = {label.name: label.pk for label in project.labels.all()}
    names = list(WORDS)
    docs = []
    for i in range(180):
        topic = names[i % 3]
        text = f"{i} " + " ".join(rng.choice(WORDS[topic]) for _ in range(rng.randint(3, 10)))
        forum = i % 4 == 0
        # The forum's labels have nothing to do with its words: the group the model
        # cannot handle. The wire's follow the words.
        label = rng.choice(names) if forum else topic
        docs.append(Document(
            project=project, text=text, text_hash=text_hash(text), rand=rng.random(),
            final_labels=[ids[label]], n_annotations=1, slots_taken=1,
            meta={"source": "forum" if forum else "wire", "language": "en"},
        ))
    Document.objects.bulk_create(docs)
    annotate_services.holdout_reserve(project=project, fraction=0.4)
    LearnerSettings.objects.update_or_create(project=project, defaults=dict(
        model_name=tiny_model_name, epochs=3, max_length=32, batch_size=8,
        train_every_labels=0, group_fields=["source", "language", "region"],
        group_margin=0.1))
    services.round_request(project=project)
    assert Worker(name="test").run_once() is True
    done = Round.objects.get(project=project)
    assert done.status == Round.Status.DONE, done.traceback
    return done


def test_the_group_the_model_handles_badly_is_flagged(grouped_round, client, lead):
    groups = grouped_round.groups
    assert groups["overall_macro_f1"] == pytest.approx(grouped_round.metrics["macro_f1"],
                                                       abs=0.02)
    source = {row["value"]: row for row in groups["fields"]["source"]}
    assert source["forum"]["flagged"] and not source["wire"]["flagged"]
    assert source["forum"]["n"] + source["wire"]["n"] == grouped_round.n_holdout
    assert source["forum"]["macro_f1"] < groups["overall_macro_f1"] - 0.1
    assert source["forum"]["macro_f1_low"] <= source["forum"]["macro_f1"] \
        <= source["forum"]["macro_f1_high"]
    # One value for everyone is the whole holdout; a field no document has is "(none)".
    (language,) = groups["fields"]["language"]
    assert language["n"] == grouped_round.n_holdout and not language["flagged"]
    assert [row["value"] for row in groups["fields"]["region"]] == ["(none)"]

    client.force_login(lead)
    page = client.get(f"/p/{grouped_round.project_id}/learner/rounds/1/").content.decode()
    assert 'id="groups"' in page and 'class="flagged"><td>forum</td>' in page

    meta = json.loads((Path(grouped_round.artifact_path) / "labelwise.json").read_text())
    card = model_card(grouped_round, meta, fmt="hf", files={})
    assert card["groups"] == groups
    assert "Flagged: source = forum." in _card_markdown(card)


def test_rounds_report_no_groups_until_a_lead_names_fields(project, client, lead):
    client.force_login(lead)
    response = client.post(f"/p/{project.pk}/learner/settings/", {
        "model_name": "", "mode": "auto", "strategy": "least_confidence",
        "random_share": 0.1, "max_length": 128, "learning_rate": 5e-5, "batch_size": 16,
        "train_every_labels": 50, "train_every_minutes": 0, "suggestion_threshold": 0.6,
        "record_predictions": "on", "drift_threshold": 0.25, "drift_queue_size": 50,
        "group_fields": " source, language ,, source", "group_margin": 0.05,
    })
    assert response.status_code == 302
    saved = LearnerSettings.objects.get(project=project)
    assert saved.group_fields == ["source", "language"] and saved.group_margin == 0.05
    assert saved.record_predictions and not saved.record_texts
    # Queueing texts without recording them cannot work: the form says so.
    refused = client.post(f"/p/{project.pk}/learner/settings/", {
        "model_name": "", "mode": "auto", "strategy": "least_confidence",
        "random_share": 0.1, "max_length": 128, "learning_rate": 5e-5, "batch_size": 16,
        "train_every_labels": 50, "train_every_minutes": 0, "suggestion_threshold": 0.6,
        "drift_threshold": 0.25, "drift_queue": "on", "drift_queue_size": 50,
        "group_fields": "", "group_margin": 0.1,
    })
    assert refused.status_code == 200 and "needs their texts recorded" in refused.content.decode()
    round = services.round_request(project=project)
    assert round.config["groups"] == {"fields": ["source", "language"], "margin": 0.05}
