"""tests/browser.py: where the browser tests find a Chromium, and the one line when there is none."""

from __future__ import annotations

import os
import stat

import pytest

from tests import browser


def _fake_executable(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture()
def bare_machine(tmp_path, monkeypatch):
    """No TSMS_BROWSER, an empty PATH and no Playwright-managed browser."""
    monkeypatch.delenv(browser.ENV_VAR, raising=False)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "ms-playwright"))
    return tmp_path


def test_no_browser_fails_with_one_line_on_how_to_get_one(bare_machine):
    with pytest.raises(pytest.fail.Exception) as failure:
        browser.find_browser()
    message = str(failure.value)
    assert "\n" not in message
    assert "apt-get install -y chromium" in message and "python -m playwright install chromium" in message
    assert browser.ENV_VAR in message
    assert not isinstance(failure.value, pytest.skip.Exception)  # a failure, never a skip


def test_the_environment_variable_comes_first(bare_machine, monkeypatch):
    _fake_executable(bare_machine / "bin" / "chromium")
    mine = _fake_executable(bare_machine / "my browsers" / "chrome-dev")
    monkeypatch.setenv(browser.ENV_VAR, str(mine))
    assert browser.find_browser() == str(mine)
    monkeypatch.setenv(browser.ENV_VAR, "chrome-dev")  # a command name is looked up on PATH
    monkeypatch.setenv("PATH", str(mine.parent))
    assert browser.find_browser() == str(mine)


def test_a_wrong_environment_variable_fails_naming_it(bare_machine, monkeypatch):
    _fake_executable(bare_machine / "bin" / "chromium")  # not used instead: the user named another
    monkeypatch.setenv(browser.ENV_VAR, str(bare_machine / "missing" / "chrome"))
    with pytest.raises(pytest.fail.Exception, match=f"{browser.ENV_VAR}=.*missing.* is not an executable file"):
        browser.find_browser()


def test_names_on_path_in_order(bare_machine):
    path = bare_machine / "bin"
    chrome = _fake_executable(path / "google-chrome")
    assert browser.find_browser() == str(chrome)
    chromium_browser = _fake_executable(path / "chromium-browser")
    assert browser.find_browser() == str(chromium_browser)
    (path / "chromium").write_text("not executable")  # skipped, as a shell would
    assert browser.find_browser() == str(chromium_browser)
    os.chmod(path / "chromium", 0o755)
    assert browser.find_browser() == str(path / "chromium")


def test_playwrights_managed_browser_last(bare_machine):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        managed = p.chromium.executable_path  # under PLAYWRIGHT_BROWSERS_PATH, not installed yet
    assert managed.startswith(str(bare_machine / "ms-playwright"))
    _fake_executable(bare_machine / "ms-playwright" / os.path.relpath(managed, bare_machine / "ms-playwright"))
    assert browser.find_browser() == managed
    with sync_playwright() as p:  # inside sync_playwright (which cannot nest), pass it
        assert browser.find_browser(p) == managed
    chrome = _fake_executable(bare_machine / "bin" / "chrome")
    assert browser.find_browser() == str(chrome)
