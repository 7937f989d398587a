"""An annotator logs in and labels with the keyboard alone, in real headless Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotate.models import Annotation, Flag
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/accounts/login/")
    # Type only once the form is there and focused: keys sent before it land nowhere.
    # (Locator waits, not wait_for_function: the pages' Content-Security-Policy forbids the
    # string evaluation that the latter needs, and the tests run under that policy.)
    expect(page.locator("input[name=username]")).to_be_focused()
    page.keyboard.type(username)  # the username field has autofocus
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")


def shown_document_id(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.locator("#item").get_attribute("data-document"))


def start(page) -> None:  # type: ignore[no-untyped-def]
    """Opening the page reserves nothing; Start (focused: Enter) hands out a document."""
    expect(page.locator("#start")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#item")).not_to_have_attribute("data-document", "")


def test_annotator_labels_three_documents_with_the_keyboard_only(
    page, live_server, project, annotator, documents
):
    log_in(page, live_server, "annotator")
    page.goto(f"{live_server.url}/p/{project.pk}/annotate/")
    start(page)
    hotkeys = {label.hotkey: label.pk for label in project.labels.all()}
    answered: list[tuple[int, int]] = []
    for key in ["1", "2", "3"]:
        before = shown_document_id(page)
        page.wait_for_timeout(300)  # the annotator reads for a moment
        page.keyboard.press(key)
        # The next document is swapped in without a page load.
        expect(page.locator("#item")).not_to_have_attribute("data-document", str(before))
        answered.append((before, hotkeys[key]))
    assert page.locator("#done-today").inner_text() == "3"
    saved = {(a.document_id, a.labels[0]) for a in Annotation.objects.filter(annotator=annotator)}
    assert saved == set(answered)
    # The time each text was on screen is recorded: at least the pause above, and not
    # absurdly long (the page's clock, not the server's).
    durations = list(Annotation.objects.filter(annotator=annotator)
                     .values_list("duration_ms", flat=True))
    assert all(d is not None and 250 <= d < 60_000 for d in durations), durations

    # Undo (u) brings back the last document and deletes its answer.
    page.keyboard.press("u")
    expect(page.locator("#item")).to_have_attribute("data-document", str(answered[-1][0]))
    assert Annotation.objects.filter(annotator=annotator).count() == 2

    # Skip (s) moves on without an answer.
    page.keyboard.press("s")
    expect(page.locator("#item")).not_to_have_attribute("data-document",
                                                        str(answered[-1][0]))
    assert Annotation.objects.filter(annotator=annotator).count() == 2

    # Flag (f) opens the comment box; Enter sends it.
    flagged = shown_document_id(page)
    page.keyboard.press("f")
    page.keyboard.type("Looks machine-translated")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Flagged for the lead")
    assert Flag.objects.get(document_id=flagged).comment == "Looks machine-translated"

    # The guidelines sit beside the text, and g hides them.
    assert page.locator("#guidelines strong").inner_text() == "main"
    page.keyboard.press("g")
    assert page.locator("#side-panel").is_hidden()


def test_multi_label_toggles_and_enter_submits(page, live_server, project, annotator,
                                              documents):
    project.task_type = "multi_label"
    project.save()
    log_in(page, live_server, "annotator")
    page.goto(f"{live_server.url}/p/{project.pk}/annotate/")
    start(page)
    first = shown_document_id(page)
    page.keyboard.press("1")
    page.keyboard.press("3")
    page.keyboard.press("3")  # toggled off again
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    expect(page.locator("#item")).not_to_have_attribute("data-document", str(first))
    annotation = Annotation.objects.get(document_id=first)
    expected = sorted(project.labels.filter(hotkey__in=["1", "2"]).values_list("pk", flat=True))
    assert annotation.labels == expected
