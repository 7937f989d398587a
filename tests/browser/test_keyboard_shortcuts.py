"""Keys beyond labelling, in real headless Chromium: accepting the model's suggestion,
an undo that shows the answer it took back, and the review pages' shortcuts."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotate import selectors, services
from annotate.models import Adjudication, Annotation
from learner.models import LearnerSettings, Prediction, Round
from tests.browser.test_annotator_keyboard import log_in, shown_document_id, start
from tests.conftest import hand_out

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_accepts_the_suggestion_and_undo_shows_the_answer_selected(
    page, live_server, project, annotator, documents
):
    tech = project.labels.get(name="tech")
    latest = Round.objects.create(project=project, number=1, status=Round.Status.DONE)
    Prediction.objects.bulk_create(
        Prediction(
            round=latest,
            document=d,
            labels=[tech.pk],
            probs=[0.05, 0.05, 0.9],
            confidence=0.9,
            score=0.5,
        )
        for d in documents
    )
    LearnerSettings.objects.update_or_create(
        project=project,
        defaults={"show_suggestions": True, "random_share": 0, "suggestion_threshold": 0.5},
    )
    selectors.queue_plan_forget(project.pk)

    log_in(page, live_server, "annotator")
    page.goto(f"{live_server.url}/p/{project.pk}/annotate/")
    start(page)
    first = shown_document_id(page)
    expect(page.locator("#suggestion")).to_contain_text("tech")
    page.keyboard.press("a")
    expect(page.locator("#item")).not_to_have_attribute("data-document", str(first))
    assert Annotation.objects.get(annotator=annotator, document_id=first).labels == [tech.pk]

    # Undo: the document comes back with the answer taken back shown pressed ...
    page.keyboard.press("u")
    expect(page.locator("#item")).to_have_attribute("data-document", str(first))
    pressed = page.locator("#label-form [aria-pressed=true]")
    expect(pressed).to_have_count(1)
    expect(pressed).to_have_attribute("value", str(tech.pk))
    assert not Annotation.objects.filter(annotator=annotator, document_id=first).exists()
    # ... and Enter keeps it.
    page.keyboard.press("Enter")
    expect(page.locator("#item")).not_to_have_attribute("data-document", str(first))
    assert Annotation.objects.get(annotator=annotator, document_id=first).labels == [tech.pk]


def test_review_page_moves_picks_and_decides_from_the_keyboard(
    page, live_server, project, lead, annotator, documents
):
    project.overlap = 2
    project.save()
    labels = {label.name: label for label in project.labels.all()}
    split = documents[:2]
    for document in split:
        for user, name in ((annotator, "sport"), (lead, "tech")):
            hand_out(user, document)
            services.annotation_submit(
                user=user, project=project, document_id=document.pk, label_ids=[labels[name].pk]
            )
    log_in(page, live_server, "lead")
    page.goto(f"{live_server.url}/p/{project.pk}/review/")
    cards = page.locator(".review-item")
    expect(cards).to_have_count(2)
    expect(cards.nth(0)).to_have_class("card review-item current")
    page.keyboard.press("j")
    expect(cards.nth(1)).to_have_class("card review-item current")
    second = int(cards.nth(1).get_attribute("id").removeprefix("review-"))
    page.keyboard.press(labels["business"].hotkey)
    expect(cards.nth(1).locator(f"input[value='{labels['business'].pk}']")).to_be_checked()
    page.keyboard.press("r")
    expect(cards.nth(1).locator("input[name=reason]")).to_be_focused()
    page.keyboard.type("neither: it is about the deal")
    page.keyboard.press("Enter")
    expect(page.locator(f"#review-{second} .toast")).to_contain_text("final label saved")
    decision = Adjudication.objects.get(document_id=second)
    assert (decision.labels, decision.reason) == (
        [labels["business"].pk],
        "neither: it is about the deal",
    )
    assert not Adjudication.objects.exclude(document_id=second).exists()
