"""The web page: offline assets, and an end-to-end run in headless Chromium.

The browser test drives Debian's `chromium` (or $SPACY_EMOTION_CHROMIUM) with
Playwright's Python client; it never downloads a browser. It is skipped, with
the reason, when either is missing. Screenshots go to pytest's tmp_path, or to
$SPACY_EMOTION_SCREENSHOTS when set.
"""

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from live_server import serving

from spacy_emotion.labels import LABELS
from spacy_emotion.serving.classify import build_pipeline, classify_one
from spacy_emotion.serving.rest import STATIC_DIR, create_app

CHROMIUM = os.environ.get("SPACY_EMOTION_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_CHARS = 300
TEXT = "i feel so happy today. but i am scared of tomorrow! why am i so angry"


@pytest.fixture(scope="module")
def nlp(trained_pipeline):
    return build_pipeline(str(trained_pipeline))


@pytest.fixture(scope="module")
def app(nlp):
    return create_app(nlp, max_chars=MAX_CHARS)


def test_page_and_assets_are_served(app):
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for asset in re.findall(r'(?:href|src)="(static/[^"]+)"', page.text):
            assert client.get("/" + asset).status_code == 200, asset
        assert client.get("/static/app.js").headers["content-type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
        )


def test_no_external_resources():
    """No CDN, no web font, no absolute URL: the page works offline."""
    files = sorted(STATIC_DIR.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "style.css"}
    for path in files:
        text = path.read_text(encoding="utf8")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|@font-face", text, re.I), path.name


def test_accessible_markup():
    html = (STATIC_DIR / "index.html").read_text(encoding="utf8")
    assert '<html lang="en">' in html and 'name="viewport"' in html
    assert '<label for="text">' in html and 'id="text"' in html
    assert 'role="alert"' in html and 'aria-live="polite"' in html


def browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        pytest.skip(
            "playwright is not installed: pip install playwright (the browser is Debian's chromium, no download)"
        )
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set SPACY_EMOTION_CHROMIUM)")
    return sync_playwright


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("SPACY_EMOTION_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_browser_end_to_end(app, nlp, shots):
    sync_playwright = browser_or_skip()
    expected = classify_one(nlp, TEXT, sentences=True)
    with serving(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for name, viewport in (("wide", {"width": 1100, "height": 900}), ("narrow", {"width": 360, "height": 740})):
                page = browser.new_page(viewport=viewport)
                foreign = []

                def guard(route, foreign=foreign):  # only the server itself may be contacted
                    if urlsplit(route.request.url).hostname == "127.0.0.1":
                        route.continue_()
                    else:
                        foreign.append(route.request.url)
                        route.abort()

                page.route("**/*", guard)
                page.goto(url + "/")
                page.get_by_label("Text to classify").fill(TEXT)
                page.get_by_role("button", name="Classify").click()
                rows = page.locator("#chart [role=listitem]")
                rows.first.wait_for()

                # the chart: one bar per emotion, in order, as wide as its probability
                assert rows.count() == 6
                assert [rows.nth(i).get_attribute("data-label") for i in range(6)] == list(LABELS)
                for i, label in enumerate(LABELS):
                    p = expected["cats"][label]
                    assert rows.nth(i).get_attribute("aria-label") == f"{label}: {100 * p:.1f}%"
                    width = rows.nth(i).locator(".bar").evaluate("e => e.getBoundingClientRect().width")
                    track = rows.nth(i).locator(".bar-track").evaluate("e => e.getBoundingClientRect().width")
                    assert width == pytest.approx(max(p * track, 2), abs=2.5)
                # the label: top emotion and its confidence
                assert page.locator("#top-label").text_content() == expected["emotion"]
                assert page.locator("#top-score").text_content() == f"({100 * expected['score']:.1f}% confidence)"
                assert page.locator("#chart .top-emotion").get_attribute("data-label") == expected["emotion"]
                # the sentences, highlighted by emotion
                marks = page.locator("#sentences mark")
                assert marks.count() == len(expected["sentences"]) == 3
                for i, sent in enumerate(expected["sentences"]):
                    assert marks.nth(i).get_attribute("data-emotion") == (sent["emotion"] or "none")
                    assert marks.nth(i).text_content().startswith(sent["text"])
                # usable on a narrow screen: nothing wider than the viewport
                assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
                page.screenshot(path=str(shots / f"web-{name}.png"), full_page=True)

                # a text over the limit: the server's 413 message is shown, not a broken chart
                page.get_by_label("Text to classify").fill("a" * (MAX_CHARS + 1))
                page.get_by_role("button", name="Classify").click()
                alert = page.get_by_role("alert")
                alert.wait_for()
                assert f"the limit is {MAX_CHARS}" in alert.text_content()
                assert page.locator("#result").is_hidden()
                assert foreign == []
                page.close()
        finally:
            browser.close()
