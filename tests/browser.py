"""The Chromium that the browser tests drive, found where users have one.

In order: the ``TSMS_BROWSER`` environment variable (a path), ``chromium``,
``chromium-browser``, ``google-chrome`` / ``chrome`` on ``PATH``, then Playwright's own
managed Chromium (``python -m playwright install chromium``). With none the test fails with
one line saying how to get one: the browser tests are never skipped silently.

    from tests.browser import launch
    with sync_playwright() as p:
        browser = launch(p)
"""

from __future__ import annotations

import os
import shutil

import pytest

ENV_VAR = "TSMS_BROWSER"
NAMES_ON_PATH = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# No sandbox: tests run as root in containers; no background traffic from the browser.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOW_TO_GET_ONE = ("no Chromium for the browser tests: on Debian/Ubuntu `apt-get install -y chromium`, "
                  f"elsewhere `python -m playwright install chromium`, or set {ENV_VAR}=/path/to/chrome")


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _playwright_managed(playwright=None):
    """The path of Playwright's managed Chromium if it is installed, else None."""
    if playwright is not None:
        path = playwright.chromium.executable_path
    else:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:  # starts Playwright's driver for a moment; nothing is launched
            path = p.chromium.executable_path
    return path if path and _executable(path) else None


def find_browser(playwright=None) -> str:
    """The Chromium executable to drive; fails the test with one line if there is none.
    Pass a started ``playwright`` when inside ``sync_playwright()`` (it cannot nest)."""
    named = os.environ.get(ENV_VAR)
    if named:
        path = named if os.sep in named else shutil.which(named)  # a path or a command name
        if not path or not _executable(path):
            pytest.fail(f"{ENV_VAR}={named} is not an executable file", pytrace=False)
        return path
    for name in NAMES_ON_PATH:
        path = shutil.which(name)
        if path:
            return path
    path = _playwright_managed(playwright)
    if path:
        return path
    pytest.fail(HOW_TO_GET_ONE, pytrace=False)


def launch(playwright, extra_args=(), **kwargs):
    """A headless Chromium (the one ``find_browser`` picks) launched by ``playwright``."""
    return playwright.chromium.launch(executable_path=find_browser(playwright), args=ARGS + list(extra_args),
                                      headless=True, **kwargs)


def canvas_xy(page, x, y):
    """Video pixel -> page coordinates on the annotator's canvas (it is scaled to fit)."""
    return page.evaluate("""([x, y]) => { const c = document.getElementById('canvas'), r = c.getBoundingClientRect();
        const s = Math.min(r.width / c.width, r.height / c.height);
        return [r.left + (r.width - c.width * s) / 2 + (x + 0.5) * s, r.top + (r.height - c.height * s) / 2 + (y + 0.5) * s]; }""", [x, y])
