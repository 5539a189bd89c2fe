"""Log in to Label Studio in headless Chromium and save one page as a PNG (run in a venv that has Playwright).

    <playwright python> docs/browser.py < request.json

The request (stdin, so the password stays out of the process list) is a `Capture`. Playwright drives the
Chromium it is given (Debian's), so it never downloads a browser of its own.
"""

from __future__ import annotations

import json
import sys
from typing import TypedDict

from playwright.sync_api import sync_playwright

# Label Studio's single-page app can take a while on a busy 2-core machine; Playwright's default is 30 s.
_TIMEOUT_MS = 90_000


class Capture(TypedDict):
    chromium: str
    url: str
    email: str
    password: str
    page: str
    texts: list[str]
    choices: list[str]
    out: str
    width: int
    height: int


def capture(request: Capture) -> None:
    """Log in through Label Studio's form, open `page`, wait until each of `texts` and a radio
    button for each of `choices` show, and screenshot it."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=request["chromium"], headless=True)
        try:
            page = browser.new_page(viewport={"width": request["width"], "height": request["height"]})
            page.set_default_timeout(_TIMEOUT_MS)
            # The login form's fields (label_studio/users/templates/users/user_login.html, 1.23.2).
            page.goto(f"{request['url']}/user/login/")
            page.fill("#email", request["email"])
            page.fill("#password", request["password"])
            page.click("button[type=submit]")
            page.wait_for_url(lambda address: "/user/login" not in address)
            page.goto(request["url"] + request["page"])
            for text in request["texts"]:
                page.get_by_text(text, exact=True).first.wait_for(state="visible")
            for choice in request["choices"]:
                page.get_by_role("radio", name=choice).wait_for(state="visible")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=request["out"])
        finally:
            browser.close()


if __name__ == "__main__":
    capture(json.load(sys.stdin))
