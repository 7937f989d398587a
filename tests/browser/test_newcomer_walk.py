"""The demo as a newcomer walks it, in real headless Chromium against a live server, with
the real learner loop and an export worker running beside it (as `make demo` runs them):

- the lead opens the Learner dashboard before anything has trained and leaves it open;
- round 1 (from the demo's seed labels) appears on it without a page load;
- the lead asks for round 1's model from its page in another tab;
- the annotator labels ten documents from the keyboard, each answer recorded;
- round 2 (from those ten labels) appears on the still-open dashboard;
- the export is downloaded within five minutes of asking, and is the zip the README
  describes.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile

import pytest
from django.core.management import call_command
from django.db import close_old_connections, connection
from playwright.sync_api import expect

from annotate.models import Annotation, Document, Project
from learner.export import export_jobs_run_once
from learner.management.commands.demo_setup import DEMO_PROJECT, LABELS
from learner.models import LearnerSettings, Round
from learner.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CURVE_POINTS = "#learning-curve circle.point[data-series=macro_f1]"
LABELS_PER_ROUND = 10
EXPORT_POLLS = 150  # reloads of the round page, 2 s apart, before the export counts as lost


def log_in(page, live_server, username: str, password: str) -> None:  # type: ignore[no-untyped-def]
    """From the keyboard, as test_annotator_keyboard does: the username field has autofocus."""
    page.goto(f"{live_server.url}/accounts/login/")
    expect(page.locator("input[name=username]")).to_be_focused()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")


def looped(step, stop: threading.Event, pause: float) -> None:  # type: ignore[no-untyped-def]
    """`manage.py export_worker`'s loop, stoppable: run a job, or wait and look again."""
    try:
        while not stop.is_set():
            close_old_connections()
            if not step():
                stop.wait(pause)
    finally:
        connection.close()  # this thread's own connection


@pytest.fixture
def demo(settings, tmp_path, tiny_model_name):  # type: ignore[no-untyped-def]
    """The demo project from `manage.py demo_setup` (the BBC News corpus, its seed labels
    and holdout, the demo accounts with generated passwords), made cheap to train."""
    settings.DATA_DIR = tmp_path
    settings.LABELWISE_ARTIFACT_DIR = tmp_path / "artifacts"
    call_command("demo_setup", stdout=io.StringIO())
    project = Project.objects.get(name=DEMO_PROJECT)
    # The demo's own settings fine-tune MiniLM (mode auto) over 128 tokens: minutes a round
    # on two shared cores. The loop under test is the same with the tiny BERT, a frozen
    # encoder and a linear head over 32 tokens: seconds a round, so two rounds and an
    # export fit in a test. A round every ten labels makes the annotator's ten labels
    # exactly one round (the seed labels, well over ten, start round 1).
    LearnerSettings.objects.filter(project=project).update(
        model_name=tiny_model_name, mode=LearnerSettings.Mode.HEAD, max_length=32,
        batch_size=32, train_every_labels=LABELS_PER_ROUND,
    )
    credentials = json.loads((tmp_path / "demo_credentials.json").read_text())
    return project, credentials


@pytest.fixture
def one_torch_thread():  # type: ignore[no-untyped-def]
    # The 2-core test machine: two OpenMP threads spin against the live server's thread.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_newcomer_labels_watches_two_rounds_and_downloads_a_model_during_the_demo(
    browser, live_server, demo, one_torch_thread, tmp_path
):  # type: ignore[no-untyped-def]
    project, credentials = demo
    base = f"{live_server.url}/p/{project.pk}"
    lead_context = browser.new_context(viewport={"width": 1280, "height": 900},
                                       accept_downloads=True)
    annotator_context = browser.new_context(viewport={"width": 1280, "height": 900})
    for context in (lead_context, annotator_context):
        context.set_default_timeout(15_000)
        context.set_default_navigation_timeout(45_000)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        # The lead opens the dashboard before the learner has run anything.
        dashboard = lead_context.new_page()
        log_in(dashboard, live_server, "lead", credentials["lead"])
        dashboard.goto(f"{base}/learner/")
        expect(dashboard.locator("#round-progress")).to_contain_text("No round yet")
        loads: list[str] = []
        dashboard.on("load", lambda: loads.append(dashboard.url))

        # `make demo` starts the learner and the export worker beside the web app.
        learner = Worker(name="demo-learner", progress_interval=0.5)
        threads = [
            threading.Thread(target=learner.run_forever,
                             kwargs={"poll_seconds": 0.5, "stop": stop}, daemon=True),
            threading.Thread(target=looped, daemon=True, args=(
                lambda: export_jobs_run_once(worker="demo-exports"), stop, 1.0)),
        ]
        for thread in threads:
            thread.start()

        # Round 1, from the seed labels, appears on the open page and finishes there.
        expect(dashboard.locator("#round-status")).to_contain_text("ound 1", timeout=30_000)
        expect(dashboard.locator("#round-results h2")).to_have_text(
            "Round 1 on the holdout", timeout=120_000)
        expect(dashboard.locator(CURVE_POINTS)).to_have_count(1)
        round1 = Round.objects.get(project=project, number=1)
        assert round1.status == Round.Status.DONE, round1.traceback

        # The lead asks for round 1's model from its page, in another tab.
        round_page = lead_context.new_page()
        round_page.goto(f"{base}/learner/rounds/1/")
        round_page.select_option("#downloads select[name=format]", "hf")
        round_page.click("#downloads button[type=submit]")
        expect(round_page.locator("body")).to_contain_text(
            "Hugging Face folder (safetensors) export queued")

        # The annotator labels ten documents from the keyboard alone.
        annotate = annotator_context.new_page()
        log_in(annotate, live_server, "annotator", credentials["annotator"])
        annotate.goto(f"{base}/annotate/")
        expect(annotate.locator("#start")).to_be_focused()
        annotate.keyboard.press("Enter")
        expect(annotate.locator("#item")).not_to_have_attribute("data-document", "")
        hotkeys = {label.hotkey: label.pk for label in project.labels.all()}
        assert sorted(hotkeys) == ["1", "2", "3", "4", "5"] and len(LABELS) == 5
        answered: list[tuple[int, int]] = []
        for i in range(LABELS_PER_ROUND):
            key = str(i % 5 + 1)
            shown = int(annotate.locator("#item").get_attribute("data-document"))
            annotate.keyboard.press(key)
            expect(annotate.locator("#item")).not_to_have_attribute("data-document",
                                                                    str(shown))
            expect(annotate.locator("#done-today")).to_have_text(str(i + 1))
            answered.append((shown, hotkeys[key]))
            saved = Annotation.objects.get(document_id=shown, annotator__username="annotator")
            assert saved.labels == [hotkeys[key]]
        assert Document.objects.filter(pk__in=[d for d, _ in answered],
                                       final_labels__isnull=False).count() == LABELS_PER_ROUND

        # Round 2, from those ten labels, appears on the dashboard nobody reloaded.
        expect(dashboard.locator("#round-results h2")).to_have_text(
            "Round 2 on the holdout", timeout=120_000)
        expect(dashboard.locator(CURVE_POINTS)).to_have_count(2)
        assert loads == [], f"the dashboard was reloaded: {loads}"
        round2 = Round.objects.get(project=project, number=2)
        assert round2.trigger == Round.Trigger.LABELS
        assert round2.n_train == round1.n_train + LABELS_PER_ROUND

        # The export the lead asked for is built while rounds keep coming (its own worker,
        # never starved by them) and downloads from round 1's page. The wait is bounded by
        # a number of polls; how long it takes is not asserted (machines are shared).
        download_link = round_page.locator("#downloads a", has_text="Download zip")
        for _ in range(EXPORT_POLLS):
            if download_link.count():
                break
            round_page.wait_for_timeout(2_000)
            round_page.reload()
        assert download_link.count(), round_page.locator("#downloads").inner_text()
        with round_page.expect_download() as download_info:
            download_link.click()
        saved_zip = tmp_path / "model.zip"
        download_info.value.save_as(saved_zip)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        lead_context.close()
        annotator_context.close()

    with zipfile.ZipFile(saved_zip) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        (folder,) = {name.split("/")[0] for name in names}
        assert folder.startswith("round-1-hf-"), folder
        for file in ("model.safetensors", "config.json", "model_card.json", "README.md",
                     "labelwise.json"):
            assert f"{folder}/{file}" in names, (file, names)
        card = json.loads(archive.read(f"{folder}/model_card.json"))
    assert sorted(card["labels"]) == sorted(LABELS)
    assert card["data_fingerprint"] == round1.data_fingerprint
