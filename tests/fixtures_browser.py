"""Fixtures ``browser`` (Debian's Chromium, /usr/bin/chromium, driven by playwright; never `playwright install`)
and ``page`` (a fresh browser context logged in to the session's Label Studio), for the real-browser tests; and
``column``: what the Data Manager shows under a header."""
from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: Debian's chromium package (.ci/run installs it with apt-get)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()



@pytest.fixture
def page(browser, label_studio):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(f"{label_studio.url}/user/login/")
    pg.fill('input[name="email"]', label_studio.email)
    pg.fill('input[name="password"]', label_studio.password)
    pg.click('button[type="submit"]')
    pg.wait_for_url(lambda url: "/user/login" not in url)
    try:
        yield pg
    finally:
        context.close()


COLUMN_JS = """title => {
    const heads = [...document.querySelectorAll('.lsf-table-head > *')];
    const i = heads.findIndex(h => h.innerText.trim() === title);
    const rows = [...document.querySelectorAll('[data-testid="table-row"]')].map(
        row => row.querySelectorAll(':scope > .lsf-table__cell')[i].innerText.trim());
    return rows;
}"""


def column(page, title: str) -> list[str]:
    """The Data Manager table's cells under the header ``title``, top to bottom."""
    return page.evaluate(COLUMN_JS, title)
