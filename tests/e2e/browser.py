"""Debian's chromium, driven headless by Playwright, for the end-to-end checks of Airflow's UI.

The browser is the system's (installed with apt when missing); Playwright downloads none.
Screenshots go to ``.airflow/e2e/screenshots/``, kept as test artifacts.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.e2e.debian import apt_install

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine's network is closed: no calls home
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1400, "height": 1000}


def ensure_chromium() -> Path:
    """Debian's ``chromium``, installed with apt when it is not there yet."""
    if not CHROMIUM.exists():
        apt_install("chromium")
    return CHROMIUM


@contextmanager
def browser_page(screenshots: Path) -> Iterator[Page]:
    """A page of a fresh headless chromium; its screenshots folder is made first."""
    from playwright.sync_api import sync_playwright

    screenshots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(ensure_chromium()), args=list(FLAGS), headless=True
        )
        try:
            yield browser.new_page(viewport=VIEWPORT)
        finally:
            browser.close()
