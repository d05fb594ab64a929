"""The web page end to end: a live ``crossrank serve`` with the tiny model, driven in headless Chromium by Playwright.

Needs Debian's ``chromium`` (installed by ``.ci/run``) and the ``playwright`` Python package; Playwright's own browser
download is never used.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
API_KEY = "test-key-0123"
PAYLOAD_LIMIT = 150_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
GREEN = "rgb(31, 122, 58)"   # --good in style.css
RED = "rgb(180, 35, 24)"     # --bad in style.css
HOSTILE = [
    "<script>window.__pwned = 'script'</script>plain words after",
    '<img src=x onerror="window.__pwned = \'img\'; alert(1)">',
    '<a href="javascript:window.__pwned=\'link\';alert(2)">click me</a>',
    '"><svg onload=alert(3)> & &amp; &lt;b&gt;',
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live `crossrank serve` on loopback, with an API key and a small payload limit so errors are reachable."""
    port = _free_port()
    env = {**os.environ, "CROSSRANK_API_KEY": API_KEY}   # via the env var, so the key is not on the command line
    command = [sys.executable, "-m", "crossrank", "serve", "--model", str(tiny_model_dir),
               "--device", "cpu", "--host", "127.0.0.1", "--port", str(port), "--payload-limit", str(PAYLOAD_LIMIT)]
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    log = log_path.open("wb")   # a file, not a pipe: a pipe nobody reads would stall a chatty server
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"crossrank serve exited: {log_path.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(base + "health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("crossrank serve did not become healthy in time")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Watched:
    """A page plus everything it said: console errors, uncaught exceptions and dialogs (alert/confirm)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Watched]:
    """A fresh tab on the page, as a user who already entered the right API key in this session."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.add_init_script(f"sessionStorage.setItem('crossrank.apiKey', {json.dumps(API_KEY)})")
    tab = context.new_page()
    watched = Watched(tab)
    tab.goto(server)
    yield watched
    context.close()


def api(server: str, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(server + path, json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    response.raise_for_status()
    return response.json()


def wait_until(page: Any, predicate: str, timeout: float = 60.0) -> None:
    """Poll a JS arrow function with page.evaluate: Playwright's wait_for_function needs eval, which the CSP forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            shown = page.evaluate("() => [document.getElementById('error').textContent,"
                                  " document.getElementById('status').textContent]")
            raise AssertionError(f"timed out waiting for {predicate}; the page shows {shown}")
        time.sleep(0.05)


def paste(page: Any, selector: str, text: str) -> None:
    """Set a big text at once, as a paste does: Playwright's fill takes seconds per 10,000 characters."""
    page.eval_on_selector(selector, "(el, text) => { el.value = text; el.dispatchEvent(new Event('input')); }", text)


def rerank_in_page(page: Any, query: str, lines: list[str], expected_cards: int) -> None:
    page.fill("#query", query)
    if len(lines) > 100:
        paste(page, "#documents", "\n".join(lines))
    else:
        page.fill("#documents", "\n".join(lines))
    page.click("#rerank")
    wait_until(page, f"() => document.querySelectorAll('#cards .card').length === {expected_cards}"
                     " && !document.getElementById('rerank').disabled")


def card_rows(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all("#cards .card", """cards => cards.map(c => ({
        index: Number(c.dataset.index), score: c.querySelector('.score').textContent,
        text: c.querySelector('.passage').textContent, above: c.classList.contains('above'),
        below: c.classList.contains('below'), hidden: c.hidden,
        colour: getComputedStyle(c.querySelector('.score')).color,
        barWidth: c.querySelector('.bar-fill').getBoundingClientRect().width,
        barTrack: c.querySelector('.bar').getBoundingClientRect().width }))""")


def set_threshold(page: Any, value: float) -> None:
    """Type an exact threshold into the number box beside the slider (the slider itself moves in steps of 0.01)."""
    page.fill("#threshold-number", repr(value))
    assert float(page.input_value("#threshold")) == pytest.approx(value, abs=0.005)


def test_cards_follow_the_api_and_the_threshold(page: Watched, server: str) -> None:
    query = "vitamin D deficiency symptoms"
    lines = ["Low vitamin D levels are linked to fatigue and bone pain.", "", "维生素D缺乏会导致疲劳。",
             "Iron deficiency anemia shows up as pale skin.", "  Scurvy comes from a lack of vitamin C.  ",
             '{"json": "value", "n": [1, 2]}', "# Markdown *heading* with `code`"]
    docs = [line.strip() for line in lines if line.strip()]
    ids = [i + 1 for i, line in enumerate(lines) if line.strip()]
    rerank_in_page(page.page, query, lines, len(docs))

    expected = api(server, "v1/rerank", {"query": query, "documents": docs})["results"]
    raw = {r["index"]: r["score"] for r in api(server, "rerank", {"query": query, "texts": docs, "raw_scores": True})}
    cards = card_rows(page.page)
    assert [c["index"] for c in cards] == [r["index"] for r in expected]
    assert [c["score"] for c in cards] == [f"{r['relevance_score']:.4f}" for r in expected]
    assert [c["text"] for c in cards] == [docs[r["index"]] for r in expected]
    for card, result in zip(cards, expected, strict=True):
        assert card["barWidth"] == pytest.approx(card["barTrack"] * result["relevance_score"], abs=1.5)
    raw_texts = page.page.eval_on_selector_all("#cards .card .raw", "els => els.map(e => e.textContent)")
    assert [float(t.split()[-1]) for t in raw_texts] == pytest.approx([raw[r["index"]] for r in expected], abs=1e-4)
    assert page.page.text_content("#info-device") == "cpu"
    assert page.page.text_content("#info-dtype") == "fp32"

    # Recolouring is live: green strictly above, red at or below. The slider by keyboard (End = 1, Home = 0), then
    # exact values: a threshold equal to the median score makes that card red and the better ones green.
    def assert_colours(threshold: float) -> None:
        for card, result in zip(card_rows(page.page), expected, strict=True):
            above = result["relevance_score"] > threshold
            assert (card["above"], card["below"]) == (above, not above)
            assert card["colour"] == (GREEN if above else RED)

    page.page.focus("#threshold")
    page.page.keyboard.press("End")
    assert_colours(1.0)
    page.page.keyboard.press("Home")
    assert_colours(0.0)
    median = sorted(r["relevance_score"] for r in expected)[len(expected) // 2]
    thresholds = [0.0, 1.0, median]
    assert {r["relevance_score"] > median for r in expected} == {True, False}
    for threshold in thresholds:
        set_threshold(page.page, threshold)
        assert_colours(threshold)
        assert not any(c["hidden"] for c in card_rows(page.page))
    page.page.check("#hide-below")
    for threshold in thresholds:
        set_threshold(page.page, threshold)
        assert [c["hidden"] for c in card_rows(page.page)] == [r["relevance_score"] <= threshold for r in expected]
    page.page.uncheck("#hide-below")

    # Raw data: one row per passage, with its input line as ID, matching both of the service's scores.
    page.page.click("#raw-toggle")
    table = read_table(page.page)
    assert [r["index"] for r in table] == [r["index"] for r in expected]
    for row in table:
        assert row["id"] == ids[row["index"]]
        assert row["text"] == docs[row["index"]]
        assert row["raw"] == pytest.approx(raw[row["index"]], abs=1e-5)
    assert [r["score"] for r in table] == pytest.approx([r["relevance_score"] for r in expected], abs=1e-5)
    page.page.click("th[data-key='raw'] button")
    assert [r["raw"] for r in read_table(page.page)] == sorted((r["raw"] for r in table), reverse=True)
    page.page.click("th[data-key='raw'] button")
    assert [r["raw"] for r in read_table(page.page)] == sorted(r["raw"] for r in table)
    assert page.page.get_attribute("th[data-key='raw']", "aria-sort") == "ascending"
    page.page.click("th[data-key='line'] button")
    assert [r["id"] for r in read_table(page.page)] == sorted(ids)

    # Exports carry the same numbers.
    exported_json = json.loads(download(page.page, "#export-json"))
    assert exported_json["query"] == query
    assert [r["index"] for r in exported_json["results"]] == [r["index"] for r in expected]
    assert [r["relevance_score"] for r in exported_json["results"]] == [r["relevance_score"] for r in expected]
    exported_csv = list(csv.DictReader(io.StringIO(download(page.page, "#export-csv").lstrip("\ufeff"))))
    assert [int(r["index"]) for r in exported_csv] == [r["index"] for r in expected]
    assert [float(r["raw_score"]) for r in exported_csv] == pytest.approx([raw[r["index"]] for r in expected])
    assert [r["text"] for r in exported_csv] == [docs[r["index"]] for r in expected]

    ARTIFACTS.mkdir(exist_ok=True)
    page.page.screenshot(path=str(ARTIFACTS / "web_page_results.png"), full_page=True)
    page.page.set_viewport_size({"width": 390, "height": 844})
    page.page.screenshot(path=str(ARTIFACTS / "web_page_phone.png"), full_page=True)
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 390   # no sideways scrolling on a phone
    assert page.console_errors == []


def read_table(page: Any) -> list[dict[str, Any]]:
    rows = page.eval_on_selector_all("#raw-table tbody tr", """rows => rows.map(r => ({
        index: Number(r.dataset.index), cells: Array.from(r.cells).map(c => c.textContent) }))""")
    return [{"index": r["index"], "id": int(r["cells"][0]), "text": r["cells"][1], "raw": float(r["cells"][2]),
             "score": float(r["cells"][3])} for r in rows]


def download(page: Any, button: str) -> str:
    with page.expect_download() as info:
        page.click(button)
    return Path(info.value.path()).read_text(encoding="utf-8")


def test_hostile_text_is_shown_literally_and_runs_nothing(page: Watched) -> None:
    # The query shares terms with the payloads, so the highlighting path handles the markup too.
    query = "<img src=x onerror=alert(9)> script javascript"
    rerank_in_page(page.page, query, HOSTILE, len(HOSTILE))
    page.page.click("#raw-toggle")
    page.page.wait_for_timeout(300)   # give any injected handler (onerror, onload) the chance to fire

    texts = page.page.eval_on_selector_all("#cards .passage", "els => els.map(e => e.textContent)")
    assert sorted(texts) == sorted(HOSTILE)
    assert page.page.eval_on_selector_all("#raw-table td.text", "els => els.map(e => e.textContent)") != []
    injected = page.page.evaluate("""() => ['#cards', '#raw-table', '#error', '#status'].map(s =>
        document.querySelector(s).querySelectorAll('script, img, a, svg, iframe').length)""")
    assert injected == [0, 0, 0, 0]
    marks = page.page.eval_on_selector_all("#cards mark", "els => els.map(e => e.textContent.toLowerCase())")
    assert {"img", "src", "onerror", "script", "javascript"} <= set(marks)
    assert page.page.evaluate("window.__pwned") is None
    assert page.dialogs == []
    assert page.console_errors == []


def test_service_errors_are_readable(page: Watched) -> None:
    page.page.click("summary")
    page.page.fill("#api-key", "clé secrète")   # cannot travel in an HTTP header: said so, before any request
    page.page.fill("#query", "anything")
    page.page.fill("#documents", "one\ntwo")
    page.page.click("#rerank")
    assert "ASCII" in page.page.text_content("#error")
    page.page.fill("#api-key", "wrong-key")
    page.page.press("#api-key", "Tab")
    assert page.page.evaluate("sessionStorage.getItem('crossrank.apiKey')") == "wrong-key"
    page.page.click("#rerank")
    error = page.page.locator("#error")
    error.wait_for(state="visible")
    assert "401" in error.text_content()
    assert "wrong-key" not in error.text_content()
    assert page.page.locator("#cards .card").count() == 0

    # Right key, but more bytes than --payload-limit: the 413 reads as a sentence, and the page still works afterwards.
    page.page.fill("#api-key", API_KEY)
    page.page.press("#api-key", "Tab")
    paste(page.page, "#documents", "\n".join(["x" * 99] * (PAYLOAD_LIMIT // 100 + 50)))
    page.page.click("#rerank")
    wait_until(page.page, "() => document.getElementById('error').textContent.includes('413')")
    assert page.page.is_enabled("#rerank")
    page.page.fill("#documents", "one\ntwo")
    page.page.click("#rerank")
    wait_until(page.page, "() => document.querySelectorAll('#cards .card').length === 2")
    assert page.page.is_hidden("#error")
    # The browser itself logs each failed response ("Failed to load resource"); nothing else may appear.
    assert [e for e in page.console_errors if "Failed to load resource" not in e] == []
    assert page.dialogs == []


def test_chinese_ui_examples_keyboard_and_highlighting(page: Watched) -> None:
    page.page.click("#lang")
    assert page.page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.page.text_content("#rerank") == "重排序"
    page.page.select_option("#example", label="keyword trap: capital")
    assert page.page.input_value("#query") == "中国的首都是哪里？"
    # Keyboard only: Ctrl+Enter from the candidates box submits.
    page.page.focus("#documents")
    page.page.keyboard.press("Control+Enter")
    wait_until(page.page, "() => document.querySelectorAll('#cards .card').length === 3")
    marks = page.page.eval_on_selector_all("#cards mark", "els => els.map(e => e.textContent)")
    assert "中国的" in marks and "首都" in marks     # Chinese without spaces still gets its terms marked
    assert all(m not in ("是", "的") for m in marks)
    assert "结果" in page.page.text_content("#status")
    page.page.click("#lang")
    assert page.page.text_content("#rerank") == "Rerank"
    assert page.console_errors == []


def test_a_thousand_lines_stay_responsive(page: Watched) -> None:
    lines = [f"passage number {i} about vitamin D and sunlight, 第{i}段" for i in range(1000)]
    rerank_in_page(page.page, "vitamin D 第段", lines, 1000)
    # Moving the slider recolours 1,000 cards; it must take well under a frame budget or two.
    elapsed = page.page.evaluate("""() => {
        const s = document.getElementById('threshold'); const t0 = performance.now();
        for (const v of ['0.1', '0.9', '0.5']) { s.value = v; s.dispatchEvent(new Event('input')); }
        return (performance.now() - t0) / 3; }""")
    assert elapsed < 100
    assert page.page.locator("#cards .card").count() == 1000
    assert page.console_errors == []
