"""The annotator's page layout in real headless Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_annotator_keyboard import log_in, start

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_hiding_the_guidelines_gives_their_column_to_the_text(
    page, live_server, project, annotator, documents
):  # type: ignore[no-untyped-def]
    log_in(page, live_server, "annotator")
    page.goto(f"{live_server.url}/p/{project.pk}/annotate/")
    start(page)
    layout = page.locator(".annotate")
    item = page.locator("#item")
    with_panel = item.bounding_box()["width"]
    page.keyboard.press("g")
    expect(page.locator("#side-panel")).to_be_hidden()
    full = layout.bounding_box()["width"]
    # The text's card spans the whole layout, not the width left beside an empty column.
    assert item.bounding_box()["width"] >= full - 1
    assert with_panel < full - 300
    page.keyboard.press("g")
    expect(page.locator("#side-panel")).to_be_visible()


def test_the_reading_keys_scroll_a_long_text_not_the_page(
    page, live_server, project, annotator, documents
):  # type: ignore[no-untyped-def]
    from annotate.models import Document

    long_text = "\n\n".join(f"Paragraph {i}: " + "words that go on " * 30 for i in range(60))
    Document.objects.filter(project=project).update(text=long_text)
    log_in(page, live_server, "annotator")
    page.goto(f"{live_server.url}/p/{project.pk}/annotate/")
    start(page)
    text = page.locator("#doc-text")
    top = text.evaluate("e => e.scrollTop")
    assert top == 0
    assert text.evaluate("e => e.scrollHeight > e.clientHeight")  # it does scroll inside
    page.keyboard.press("PageDown")
    after_page = text.evaluate("e => e.scrollTop")
    assert after_page > 100
    page.keyboard.press("ArrowDown")
    assert text.evaluate("e => e.scrollTop") > after_page
    page.keyboard.press("End")
    assert text.evaluate("e => e.scrollTop + e.clientHeight >= e.scrollHeight - 2")
    page.keyboard.press("Home")
    assert text.evaluate("e => e.scrollTop") == 0
    assert page.evaluate("() => window.scrollY") == 0  # the page itself stayed put
