"""The page at GET / in Debian's headless chromium, driven by Playwright: a person types a three-turn
conversation and sees ranked passages, the student's query terms and the timing.

`make test` installs chromium first (`make browser`: apt-get, as root); without it this test is skipped.
Set DISCO_SCREENSHOT=docs/img/search-page.png to refresh the README's screenshot.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_three_turn_conversation_in_the_browser(server, searcher, test_turns, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed: run `make browser` (apt-get install chromium, as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip: .[test])")
    conv = next(t["conversation"] for t in test_turns if len(t["conversation"]) >= 5)
    users = [t["text"] for t in conv if t["speaker"] == "user"][:3]
    replies = [t["text"] for t in conv if t["speaker"] == "agent"][:2]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server + "/")
            for i, question in enumerate(users):
                if i:
                    page.fill("#reply", replies[i - 1])
                page.fill("#question", question)
                page.click("#send")
                page.wait_for_function(f"document.querySelectorAll('#conversation li.user').length === {i + 1}")
            hits = page.locator("#results li.hit")
            assert hits.count() == 10
            expected = searcher.search(conv[:5], k=10, explain=True)
            shown = [page.locator("#results li.hit .pid").nth(i).inner_text() for i in range(hits.count())]
            assert shown == [h.id for h in expected.results]
            assert page.locator("#terms .term").count() == len(expected.terms)
            assert "total" in page.inner_text("#timing")
            assert page.locator("#conversation li").count() == 5
            assert page.inner_text("#error") == ""
            shot = tmp_path / "search-page.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.stat().st_size > 10_000
            if os.environ.get("DISCO_SCREENSHOT"):
                shutil.copy(shot, os.environ["DISCO_SCREENSHOT"])
        finally:
            browser.close()
