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

pytestmark = pytest.mark.slow   # every test here drives Chromium

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
API_KEY = "test-key-0123"
PAYLOAD_LIMIT = 150_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
STATIC = Path(__file__).resolve().parents[2] / "src" / "crossrank" / "server" / "static"
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
        verdict: c.querySelector('.verdict').textContent,
        barWidth: c.querySelector('.bar-fill').getBoundingClientRect().width,
        barTrack: c.querySelector('.bar').getBoundingClientRect().width }))""")


def shown_above(score: float, threshold: float) -> bool:
    """Above the threshold as the page decides it: at the 4 decimals both are shown with."""
    return round(score * 10_000) > round(threshold * 10_000)


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

    # Recolouring is live: green strictly above, red at or below, compared at the 4 decimals the cards show. The
    # slider by keyboard (End = 1, Home = 0), then
    # exact values: a threshold equal to the median score makes that card red and the better ones green.
    def assert_colours(threshold: float) -> None:
        for card, result in zip(card_rows(page.page), expected, strict=True):
            above = shown_above(result["relevance_score"], threshold)
            assert (card["above"], card["below"]) == (above, not above)
            assert card["colour"] == (GREEN if above else RED)
            assert card["verdict"] == ("▲above" if above else "▼at or below")

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
        assert [c["hidden"] for c in card_rows(page.page)] == [
            not shown_above(r["relevance_score"], threshold) for r in expected]
    page.page.uncheck("#hide-below")

    # Raw data: one row per passage with its rank, its input line as ID, both of the service's scores at the cards'
    # 4 decimals, and whether it is above the threshold (which follows the threshold while the table is open).
    page.page.click("#raw-toggle")
    table = read_table(page.page)
    assert [r["index"] for r in table] == [r["index"] for r in expected]
    assert [r["rank"] for r in table] == list(range(1, len(docs) + 1))
    for row in table:
        assert row["id"] == ids[row["index"]]
        assert row["text"] == docs[row["index"]]
        assert row["raw_text"] == f"{raw[row['index']]:.4f}"
    assert [r["score_text"] for r in table] == [f"{r['relevance_score']:.4f}" for r in expected]
    assert [r["verdict"] for r in table] == [
        "▲ above" if shown_above(r["relevance_score"], median) else "▼ at or below" for r in expected]
    set_threshold(page.page, 0.0)
    assert all(r["verdict"] == "▲ above" for r in read_table(page.page))
    set_threshold(page.page, median)
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
    return [{"index": r["index"], "rank": int(r["cells"][0]), "id": int(r["cells"][1]), "text": r["cells"][2],
             "raw": float(r["cells"][3]), "raw_text": r["cells"][3], "score_text": r["cells"][4],
             "verdict": r["cells"][5]} for r in rows]


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
    assert page.page.evaluate("document.title") == "crossrank — 重排序试验台"
    labels = page.page.eval_on_selector_all("#example option", "os => os.map(o => o.textContent)")
    assert "关键词陷阱：首都" in labels and "keyword trap: capital" not in labels
    page.page.select_option("#example", label="关键词陷阱：首都")
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
    assert page.page.evaluate("document.title") == "crossrank — rerank playground"
    assert "keyword trap: capital" in page.page.eval_on_selector_all("#example option", "os => os.map(o => o.text)")
    assert page.console_errors == []


def wait_for_results(page: Any, cards: int) -> None:
    wait_until(page, f"() => document.querySelectorAll('#cards .card').length === {cards}"
                     " && !document.getElementById('rerank').disabled")


def test_a_thousand_results_show_the_top_fifty_and_more_on_demand(page: Watched) -> None:
    lines = [f"passage number {i} about vitamin D and sunlight, 第{i}段" for i in range(1000)]
    page.page.fill("#query", "vitamin D 第段")
    paste(page.page, "#documents", "\n".join(lines))
    page.page.click("#rerank")
    wait_for_results(page.page, 50)
    assert page.page.evaluate("document.documentElement.scrollHeight") < 15_000
    more = page.page.locator("#more")
    assert more.text_content() == "Show 50 more (950 not shown)"
    more.click()
    assert page.page.locator("#cards .card").count() == 100
    assert more.text_content() == "Show 50 more (900 not shown)"
    # The status and the raw table still speak of all 1,000.
    assert page.page.text_content("#status").startswith("1,000 results")
    page.page.click("#raw-toggle")
    assert page.page.locator("#raw-table tbody tr").count() == 1000
    # Switching the language rebuilds only the cards on screen; moving the slider recolours them at once.
    page.page.click("#lang")
    assert page.page.locator("#cards .card").count() == 100
    assert more.text_content() == "再显示 50 条（还有 900 条未显示）"
    elapsed = page.page.evaluate("""() => {
        const s = document.getElementById('threshold'); const t0 = performance.now();
        for (const v of ['0.1', '0.9', '0.5']) { s.value = v; s.dispatchEvent(new Event('input')); }
        return (performance.now() - t0) / 3; }""")
    assert elapsed < 100
    assert page.console_errors == []


def fresh_page(browser: Any, server: str, *, key: str | None = API_KEY, **context: Any) -> tuple[Any, Watched]:
    """A new tab (and its context, to close) with the given viewport/emulation, and the API key unless None."""
    ctx = browser.new_context(**({"viewport": {"width": 1280, "height": 900}} | context))
    if key is not None:
        ctx.add_init_script(f"sessionStorage.setItem('crossrank.apiKey', {json.dumps(key)})")
    tab = ctx.new_page()
    watched = Watched(tab)
    tab.goto(server)
    return ctx, watched


def in_view(page: Any, selector: str) -> bool:
    return bool(page.evaluate("""s => { const r = document.querySelector(s).getBoundingClientRect();
        return r.top >= 0 && r.top < window.innerHeight && r.height > 0; }""", selector))


def test_on_a_phone_rerank_brings_the_results_into_view(browser: Any, server: str) -> None:
    ctx, page = fresh_page(browser, server, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        tab = page.page
        tab.fill("#query", "vitamin D")
        tab.fill("#documents", "\n".join(["sunlight and vitamin D", "iron and anaemia", "bone pain"]))
        tab.evaluate("window.scrollTo(0, 0)")
        assert not in_view(tab, "#status")   # below the whole form on a phone
        tab.tap("#rerank")
        wait_for_results(tab, 3)
        wait_until(tab, "() => { const r = document.getElementById('status').getBoundingClientRect();"
                        " return r.top >= 0 && r.bottom <= window.innerHeight; }", timeout=5)
        assert tab.text_content("#status").startswith("3 results")
        # A failure is brought into view too: the service's own error, not the form's.
        tab.evaluate("window.scrollTo(0, 0)")
        paste(tab, "#documents", "\n".join(["x" * 99] * (PAYLOAD_LIMIT // 100 + 50)))
        tab.tap("#rerank")
        wait_until(tab, "() => document.getElementById('error').textContent.includes('413')")
        wait_until(tab, "() => { const r = document.getElementById('error').getBoundingClientRect();"
                        " return r.top >= 0 && r.bottom <= window.innerHeight; }", timeout=5)
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / "web_page_phone_error.png"))
    finally:
        ctx.close()


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two CSS rgb()/rgba() colours."""
    def luminance(colour: str) -> float:
        r, g, b = (int(float(v)) / 255 for v in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_above_and_below_differ_by_more_than_colour(page: Watched) -> None:
    tab = page.page
    docs = ["sunlight and vitamin D", "iron deficiency", "bone pain and fatigue", "a recipe for bread",
            "the history of Rome", "毛笔字的写法"]
    rerank_in_page(tab, "vitamin D", docs, 6)
    scores = [float(c["score"]) for c in card_rows(tab)]
    assert scores[2] > scores[3]
    # The shown score of the fourth card: the page compares at the 4 decimals it shows, so a midpoint between two
    # scores one step apart would round onto the third card's score.
    set_threshold(tab, scores[3])
    cards = card_rows(tab)
    assert [c["verdict"] for c in cards] == ["▲above"] * 3 + ["▼at or below"] * 3
    # One divider, drawn, exactly between the last card above and the first at or below.
    divider = tab.evaluate("""() => { const d = document.querySelectorAll('#cards .divider');
        if (d.length !== 1) return null; const e = d[0], line = getComputedStyle(e, '::before');
        return { prev: e.previousElementSibling.classList.contains('above'),
                 next: e.nextElementSibling.classList.contains('below'), text: e.textContent,
                 height: e.getBoundingClientRect().height, line: line.borderTopStyle + ' ' + line.borderTopWidth,
                 role: e.getAttribute('role') }; }""")
    assert divider is not None and divider["prev"] and divider["next"] and divider["height"] > 0
    assert divider["line"] == "dashed 2px" and divider["role"] == "separator" and "threshold" in divider["text"]
    set_threshold(tab, 0.0)   # everything above: the divider closes the list
    assert tab.evaluate("document.querySelector('#cards').lastElementChild.className") == "divider"
    set_threshold(tab, 1.0)   # nothing above: it opens the list
    assert tab.evaluate("document.querySelector('#cards').firstElementChild.className") == "divider"
    # Every input's border stands out from what surrounds it by 3:1 at least (WCAG 1.4.11).
    tab.click("summary")
    for selector in ("#query", "#documents", "#api-key", "#example", "#threshold-number"):
        border, inside, outside = tab.evaluate("""s => { const e = document.querySelector(s);
            const clear = x => getComputedStyle(x).backgroundColor === 'rgba(0, 0, 0, 0)';
            const bg = x => { while (x && clear(x)) x = x.parentElement;
                              return x ? getComputedStyle(x).backgroundColor : 'rgb(255, 255, 255)'; };
            return [getComputedStyle(e).borderTopColor, bg(e), bg(e.parentElement)]; }""", selector)
        assert min(contrast(border, inside), contrast(border, outside)) >= 3, (selector, border, inside, outside)
    assert page.console_errors == []


def test_results_that_no_longer_match_are_marked(page: Watched) -> None:
    tab = page.page
    rerank_in_page(tab, "vitamin D", ["sunlight", "iron", "bone pain"], 3)
    assert tab.is_hidden("#stale") and "stale" not in tab.get_attribute("#results", "class")
    tab.fill("#query", "vitamin C")   # edited: the cards answer another query now
    assert tab.is_visible("#stale") and "earlier input" in tab.text_content("#stale")
    tab.fill("#query", "vitamin D")   # back as it was: they match again
    assert tab.is_hidden("#stale")

    held: list[Any] = []
    tab.route("**/v1/rerank", lambda route: held.append(route))
    tab.click("#rerank")
    wait_until(tab, "() => document.getElementById('status').textContent.startsWith('Scoring')")
    while not held:
        tab.wait_for_timeout(20)
    # While it runs the old cards are dimmed, and moving the threshold does not bring back their status.
    assert tab.is_visible("#stale")
    assert float(tab.eval_on_selector("#cards", "e => getComputedStyle(e).opacity")) < 1
    set_threshold(tab, 0.25)
    assert tab.text_content("#status") == "Scoring 3 passages…"
    held[0].fulfill(status=503, content_type="application/json", headers={"Retry-After": "1"},
                    body=json.dumps({"error": "the model is not ready yet", "error_type": "unhealthy"}))
    wait_until(tab, "() => !document.getElementById('error').hidden")
    assert tab.text_content("#status") == ""
    assert tab.is_visible("#stale") and tab.locator("#cards .card").count() == 3   # kept, but marked as old
    tab.unroute("**/v1/rerank")
    tab.click("#rerank")
    wait_until(tab, "() => document.getElementById('status').textContent.startsWith('3 results')")
    assert tab.is_hidden("#stale") and tab.is_hidden("#error")
    assert [e for e in page.console_errors if "Failed to load resource" not in e] == []


def test_threshold_box_clamps_says_so_and_compares_as_shown(page: Watched, server: str) -> None:
    tab = page.page
    docs = ["sunlight and vitamin D", "iron", "bone pain"]
    rerank_in_page(tab, "vitamin D", docs, 3)
    tab.fill("#threshold-number", "1.5")
    assert tab.is_visible("#threshold-error") and "using 1" in tab.text_content("#threshold-error")
    assert tab.get_attribute("#threshold-number", "aria-invalid") == "true"
    assert float(tab.input_value("#threshold")) == 1.0
    assert all(c["below"] for c in card_rows(tab)) and tab.text_content("#status").endswith("0 above 1")
    tab.press("#threshold-number", "Tab")   # leaving the box shows the value in force
    assert tab.input_value("#threshold-number") == "1" and tab.is_hidden("#threshold-error")
    tab.fill("#threshold-number", "")
    assert "still using 1" in tab.text_content("#threshold-error")
    assert float(tab.input_value("#threshold")) == 1.0
    tab.press("#threshold-number", "Tab")
    assert tab.input_value("#threshold-number") == "1"

    # A threshold a hair below a score looks equal to it at 4 decimals: the card is then at-or-below, red, so the
    # colour never disagrees with the numbers on screen.
    card = card_rows(tab)[0]
    score = api(server, "v1/rerank", {"query": "vitamin D", "documents": docs})["results"][0]["relevance_score"]
    for hair in (-4e-6, 4e-6):
        threshold = score + hair
        if f"{threshold:.4f}" != card["score"]:
            continue   # the score sits next to a rounding boundary; the other side still checks it
        set_threshold(tab, threshold)
        tab.press("#threshold-number", "Tab")
        first = card_rows(tab)[0]
        assert tab.input_value("#threshold-number") == str(round(threshold, 4))
        assert first["below"] and first["colour"] == RED and first["verdict"] == "▼at or below"
    assert page.console_errors == []


def test_long_passages_are_collapsed_and_say_how_much_was_read(page: Watched) -> None:
    tab = page.page
    long = ("Vitamin D comes from sunlight and food; it keeps bones strong. " * 800)[:50_000].strip()
    rerank_in_page(tab, "vitamin D", [long, "a short passage"], 2)
    card = tab.locator("#cards .card", has_text="Vitamin D comes")
    passage, toggle = card.locator(".passage"), card.locator("button.more-text")
    assert len(passage.text_content()) < 1_000 and toggle.text_content() == "Show more"
    assert toggle.get_attribute("aria-expanded") == "false"
    note = card.locator(".read-note").text_content()
    assert note.startswith("The model read characters 1–") and "of 50,000" in note and "the rest was cut" in note
    # Opened: the whole passage, the part the model read apart from the rest.
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true" and toggle.text_content() == "Show less"
    read = card.locator(".passage .read").text_content()
    unread = card.locator(".passage .unread").text_content()
    assert read + unread == long and 0 < len(read) < 5_000
    assert f"1–{len(read):,} of 50,000" in note
    toggle.click()
    assert len(passage.text_content()) < 1_000
    short = tab.locator("#cards .card", has_text="a short passage")
    assert short.locator(".read-note").count() == 0 and short.locator("button.more-text").count() == 0
    assert page.console_errors == []


def test_chunked_passages_name_the_window_that_won(page: Watched) -> None:
    # A service that splits long passages into windows answers with the winning one (tests/server/test_read_span.py
    # checks that side); here the answer is given to the page directly.
    tab = page.page
    long = " ".join(f"w{i}" for i in range(8000))
    start = long.index("w4000")
    answer = {"id": "x", "object": "rerank", "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1},
              "meta": {"billed_units": {"search_units": 1}, "tokens": {"input_tokens": 1}},
              "results": [{"index": 0, "relevance_score": 0.9, "raw_score": 2.2,
                           "read_span": {"start": start, "end": start + 2000, "tokens": 500, "window": 7,
                                         "windows": 19}}]}
    sent: list[Any] = []

    def fake(route: Any) -> None:
        sent.append(route.request.post_data_json)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    tab.route("**/v1/rerank", fake)
    rerank_in_page(tab, "w4000", [long], 1)
    assert sent[0]["return_read_span"] is True
    card = tab.locator("#cards .card")
    note = card.locator(".read-note").text_content()
    assert note == (f"Read in 19 windows; window 8 scored best: characters {start + 1:,}–{start + 2000:,} of "
                    f"{len(long):,} (500 tokens).")
    # Collapsed, the card shows the window that won, not the passage's start.
    shown = card.locator(".passage").text_content()
    assert shown.startswith("… w4000") and len(shown) < 1_000
    card.locator("button.more-text").click()
    assert card.locator(".passage .read").text_content() == long[start : start + 2000]


def test_without_a_key_a_401_opens_the_key_field(browser: Any, server: str) -> None:
    ctx, page = fresh_page(browser, server, key=None)
    try:
        tab = page.page
        tab.fill("#query", "anything")
        tab.fill("#documents", "one\ntwo")
        tab.click("#rerank")
        wait_until(tab, "() => !document.getElementById('error').hidden")
        assert tab.text_content("#error") == "This service needs an API key (401). Enter it under “API key”."
        assert tab.evaluate("document.getElementById('key-details').open")
        assert tab.evaluate("document.activeElement.id") == "api-key"
        tab.keyboard.type(API_KEY)    # typing the key is the fix: the banner goes
        assert tab.is_hidden("#error")
        tab.press("#api-key", "Tab")
        tab.click("#rerank")
        wait_for_results(tab, 2)
    finally:
        ctx.close()


def test_the_error_banner_goes_once_the_input_is_fixed(page: Watched) -> None:
    tab = page.page
    tab.fill("#documents", "one")
    tab.click("#rerank")
    assert tab.text_content("#error") == "Please type a query."
    tab.fill("#query", "   ")
    assert tab.is_visible("#error")      # still no query
    tab.fill("#query", "a query")
    assert tab.is_hidden("#error")
    tab.fill("#documents", "\n  \n")
    tab.click("#rerank")
    assert tab.text_content("#error").startswith("Please add at least one candidate")
    tab.fill("#documents", "one")
    assert tab.is_hidden("#error")


def test_one_result_wrapping_and_right_to_left(page: Watched) -> None:
    tab = page.page
    arabic = "فيتامين د يأتي من أشعة الشمس"
    rerank_in_page(tab, "vitamin D", [arabic], 1)
    assert tab.text_content("#status").startswith("1 result in ")
    assert tab.text_content("#line-count") == "· 1 passage"
    passage = tab.locator("#cards .passage")
    assert passage.get_attribute("dir") == "auto" and passage.evaluate("e => e.matches(':dir(rtl)')")
    tab.click("#raw-toggle")
    assert tab.locator("#raw-table td.text").evaluate("e => e.matches(':dir(rtl)')")
    assert tab.get_attribute("#documents", "dir") == "auto" and tab.get_attribute("#query", "dir") == "auto"
    # A pasted long line wraps in the candidates box instead of scrolling it sideways.
    paste(tab, "#documents", "short\n" + "a long line of words " * 100 + "\nshort again")
    assert tab.evaluate("(e => e.scrollWidth <= e.clientWidth + 1)(document.getElementById('documents'))")
    tab.click("#lang")
    tab.click("#rerank")
    wait_for_results(tab, 3)
    tab.fill("#documents", arabic)
    tab.click("#rerank")
    wait_until(tab, "() => document.getElementById('status').textContent.startsWith('1 条结果')")
    assert page.console_errors == []


@pytest.fixture(scope="module")
def logic(browser: Any) -> Iterator[Any]:
    """The page's pure rules (logic.js) loaded alone into a blank tab."""
    tab = browser.new_page()
    tab.add_script_tag(path=str(STATIC / "logic.js"))
    yield lambda expression, *args: tab.evaluate(f"a => CrossrankLogic.{expression}(...a)", list(args))
    tab.close()


def test_logic_compares_at_the_shown_decimals(logic: Any) -> None:
    assert logic("isAbove", 0.50004, 0.5) is False      # both show as 0.5000
    assert logic("isAbove", 0.50005, 0.5) is True       # 0.5001 > 0.5000
    assert logic("isAbove", 0.49996, 0.49999) is False
    assert logic("fmt", 0.123456) == "0.1235" and logic("fmt", None) == "—"
    assert logic("thresholdText", 0.123456) == "0.1235"
    assert logic("aboveCount", [{"score": 0.9}, {"score": 0.50004}, {"score": 0.1}], 0.5) == 1


def test_logic_reads_the_threshold_box(logic: Any) -> None:
    assert logic("parseThreshold", "0.3", 0.5) == {"value": 0.3, "error": None}
    assert logic("parseThreshold", "1.5", 0.5) == {"value": 1, "error": "range"}
    assert logic("parseThreshold", "-2", 0.5) == {"value": 0, "error": "range"}
    assert logic("parseThreshold", "", 0.7) == {"value": 0.7, "error": "number"}
    assert logic("parseThreshold", " 1e-1 ", 0.7) == {"value": 0.1, "error": None}


def test_logic_collapses_passages_around_what_was_read(logic: Any) -> None:
    text = "0123456789"
    whole = logic("passageView", text, None, 20, False)
    assert whole == {"pieces": [{"text": text, "read": True}], "collapsible": False, "before": False, "after": False,
                     "length": 10}
    head = logic("passageView", text, {"start": 0, "end": 4}, 6, False)
    assert head["pieces"] == [{"text": "0123", "read": True}, {"text": "45", "read": False}]
    assert (head["before"], head["after"], head["collapsible"]) == (False, True, True)
    window = logic("passageView", text, {"start": 5, "end": 8}, 4, False)
    assert window["pieces"] == [{"text": "567", "read": True}, {"text": "8", "read": False}] and window["before"]
    opened = logic("passageView", text, {"start": 5, "end": 8}, 4, True)
    assert [p["text"] for p in opened["pieces"]] == ["01234", "567", "89"] and not opened["before"]
    emoji = logic("passageView", "🙂🙂🙂ab", {"start": 1, "end": 3}, 10, False)   # code points, as Python counts
    assert emoji["pieces"][1] == {"text": "🙂🙂", "read": True} and emoji["length"] == 5


def test_logic_words_for_reading_and_counting(logic: Any) -> None:
    span = {"start": 0, "end": 40, "tokens": 9, "window": 0, "windows": 1}
    assert logic("readNote", span, 40) is None                            # read whole: nothing to say
    assert logic("readNote", span, 100)["key"] == "readHead"
    assert logic("readNote", {**span, "start": 60, "end": 100}, 100)["key"] == "readTail"
    note = logic("readNote", {**span, "start": 60, "end": 100, "window": 2, "windows": 4}, 100)
    assert note["key"] == "readWindow" and note["vars"]["window"] == 3 and note["vars"]["start"] == 61
    assert logic("readNote", None, 10) is None
    assert logic("countKey", "status", 1) == "status1" and logic("countKey", "status", 2) == "status"
