from __future__ import annotations

import base64
import importlib.util
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"


def _require(available: bool, what: str) -> None:
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available on this machine")


@pytest.fixture
def browser(monkeypatch):
    """A headless chromium for one test.

    Playwright's sync API runs an event loop on the test thread while it is open: Django would refuse ORM
    calls, and a connection opened then is never closed. Tests therefore read what they need from the
    database in fixtures requested before this one, and keep the ORM out of the test body."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    _require(Path(CHROMIUM).exists() or bool(shutil.which("chromium")), "Debian's chromium")
    _require(importlib.util.find_spec("playwright") is not None, "playwright")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-quic",
                "--disable-sync",
            ],
        )
        yield instance
        instance.close()


# Runs in every document before its own scripts; DevTools-injected, so the page's policy does not block it.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  const blocked = event.blockedURI || "inline";
  console.error(`CSP violation: ${event.violatedDirective} blocked ${blocked} on ${location.pathname}`);
});
"""


def csp_violations(messages: list[str]) -> list[str]:
    return [text for text in messages if "CSP violation" in text or "Content Security Policy" in text]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    yield page
    context.close()
    # Every browser test fails if a page broke its Content-Security-Policy (an inline script or style crept in).
    violations = csp_violations(page.console_errors)
    if violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(violations))


def totp_now(secret: str) -> str:
    """The code an authenticator app shows now for a base32 secret typed in from the enrolment page."""
    from django_otp.oath import totp

    return f"{totp(base64.b32decode(secret)):06d}"


class BrowserLogin:
    """Logs a page in through the real pages as a person would, including the MFA step of privileged roles.

    First login of a privileged user: enrolment (the secret is read from the page, as typed into an app), then
    the backup codes page, whose codes are kept. A later login of the same user in the same test answers the
    code prompt with one of those backup codes (an app code of the same 30 s step would be a refused replay).
    """

    def __init__(self) -> None:
        self.backup_codes: dict[str, list[str]] = {}

    def __call__(self, page, base_url: str, username: str, password: str, *, path: str = "/accounts/login/"):
        page.context.clear_cookies()
        page.goto(f"{base_url}{path}")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("#content [type=submit]")
        page.wait_for_load_state()
        self.second_factor(page, username)

    def second_factor(self, page, username: str) -> None:
        path = urlparse(page.url).path
        if path == "/accounts/mfa/enrol/":
            page.screenshot(path=str(SCREENSHOTS / f"mfa-enrol-{username}.png"), full_page=True)
            page.fill("#id_code", totp_now(page.inner_text("#totp-secret").replace(" ", "")))
            page.click("#content [type=submit]")
            page.wait_for_selector("#backup-codes")
            page.screenshot(path=str(SCREENSHOTS / f"mfa-backup-codes-{username}.png"), full_page=True)
            self.backup_codes[username] = page.locator("#backup-codes li").all_inner_texts()
            page.click("text=I have saved them, continue")
            page.wait_for_load_state()
        elif path == "/accounts/mfa/":
            page.fill("#id_code", self.backup_codes[username].pop())
            page.click("#content [type=submit]")
            page.wait_for_load_state()


@pytest.fixture
def browser_log_in():
    """``browser_log_in(page, base_url, username, password)``: logged in, with the MFA step done if required."""
    return BrowserLogin()


# The password every end-to-end test seeds its demo users with.
PASSWORD = "browser-pass-2026"


@pytest.fixture
def log_in(browser_log_in):
    """Log in through the real pages (MFA enrolment or a code where the role needs one) and land on the home page."""

    def log_in(page, base_url, username):
        browser_log_in(page, base_url, username, PASSWORD)
        page.goto(f"{base_url}/")
        page.wait_for_selector("text=My trials")

    return log_in


@pytest.fixture
def screenshot(page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
