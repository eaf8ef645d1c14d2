"""Browser fixtures for the report page: the system's Chromium driven by Playwright, never a downloaded one."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_report, the synthetic report writer


def _chromium() -> str | None:
    """The system browser (Debian's `chromium`); LEXACTUM_CHROMIUM names another one."""
    return os.environ.get("LEXACTUM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session. --no-sandbox because CI runs as root; file access from files so
    that a test can read a thumbnail's pixels through a canvas (file:// pages are otherwise cross-origin)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium on PATH (apt-get install chromium); browser tests never download one")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--allow-file-access-from-files"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context per test (its own localStorage), downloads accepted, errors of the page's
    scripts collected in `page.script_errors`."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.script_errors = []
    page.on("pageerror", lambda error: page.script_errors.append(str(error)))
    yield page
    context.close()
