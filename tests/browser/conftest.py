"""Real headless Chromium (Debian's package) driven by Playwright.

Where Chromium or Playwright is missing these tests skip and say how to enable them; CI
sets LABELWISE_REQUIRE_BROWSER=1 so that a missing browser fails instead of skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.learner.conftest import tiny_model_name  # noqa: F401 - shared fixture
from tests.learner.ml.conftest import tiny_model_dir  # noqa: F401 - shared fixture

CHROMIUM = os.environ.get("LABELWISE_CHROMIUM", "/usr/bin/chromium")
HOW_TO_ENABLE = (
    "browser tests need Debian's chromium and Python Playwright: "
    "`sudo apt-get install chromium` and `pip install -e .[dev]` "
    "(set LABELWISE_CHROMIUM to use another Chromium binary)"
)


def _missing() -> str | None:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python Playwright is not installed"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    missing = _missing()
    if missing:
        if os.environ.get("LABELWISE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{missing}; LABELWISE_REQUIRE_BROWSER=1 makes browser tests required")
        pytest.skip(f"{missing}: {HOW_TO_ENABLE}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test itself still talks
    # to the database synchronously, which Django allows only with this switch.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        # The first page of a fresh browser starts its renderer and network processes; on
        # a loaded machine that alone took over 15 s, and the first test's first goto
        # timed out. Pay it here, once, outside any test's timeout.
        warm = chromium.new_page()
        warm.goto("about:blank", timeout=120_000)
        warm.set_content("<p>warm</p>", timeout=120_000)
        warm.close()
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    # Page loads wait on the live server, which shares the machine with everything else.
    page.set_default_navigation_timeout(45_000)
    yield page
    context.close()
