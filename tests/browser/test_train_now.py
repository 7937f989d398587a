"""A lead presses Train now on the dashboard and, with a real learner worker running beside
the server, watches the round's progress, its end, and the new point on the learning curve,
without reloading the page."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from playwright.sync_api import expect

from learner import services
from learner.models import Round
from learner.worker import Worker, default_runner
from tests.conftest import PASSWORD
from tests.learner.dashboard_data import label_more, trainable_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CURVE_POINTS = "#learning-curve circle.point[data-series=macro_f1]"


def log_in(page, live_server, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/accounts/login/")
    page.wait_for_selector("input[name=username]")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")


@pytest.fixture
def one_torch_thread():  # type: ignore[no-untyped-def]
    # The 2-core test machine: two OpenMP threads spin against the live server's thread.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_lead_presses_train_now_and_sees_progress_then_a_new_curve_point(
    page, live_server, project, lead, tiny_model_name, one_torch_thread
):  # type: ignore[no-untyped-def]
    trainable_project(project, tiny_model_name)
    services.round_request(project=project)  # a first round, so the curve already has a point
    assert Worker(name="setup").run_once()
    assert Round.objects.get(number=1).status == "done"
    label_more(project, 6)

    log_in(page, live_server, "lead")
    page.goto(f"{live_server.url}/p/{project.pk}/learner/")
    assert page.locator(CURVE_POINTS).count() == 1
    page.click("#train-now")
    page.wait_for_selector("#round-progress[data-status=queued]")
    assert "Round 2 queued" in page.locator("#round-status").inner_text()

    # The worker holds its first progress report until the page has shown it, so the test
    # sees the running state however fast the tiny model trains.
    shown = threading.Event()

    def runner(round, progress):  # type: ignore[no-untyped-def]
        progress("preparing", 1, 4, 30.0)
        shown.wait(timeout=30)
        return default_runner(round, progress)

    def work() -> None:
        try:
            worker = Worker(name="browser-test", runner=runner, progress_interval=0.2)
            deadline = time.monotonic() + 120
            while not worker.run_once() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        page.wait_for_selector("#round-progress[data-status=running]")
        status = page.locator("#round-status").inner_text()
        assert "preparing" in status and "25.0%" in status and "30 s left" in status
        assert page.locator("#cancel-round").is_visible()
        shown.set()

        page.wait_for_selector("#round-progress[data-status=done]", timeout=90_000)
        # The finished poll fires an event on which the curve reloads itself.
        expect(page.locator(CURVE_POINTS)).to_have_count(2, timeout=15_000)
        assert page.locator("#round-results h2").inner_text() == "Round 2 on the holdout"
        assert page.locator("#train-now").is_visible()
    finally:
        shown.set()
        thread.join(timeout=120)
    assert Round.objects.get(number=2).status == "done"
