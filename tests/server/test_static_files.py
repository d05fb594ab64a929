"""The web page's static files: packaged demo cases, and no construct the page's Content-Security-Policy would block."""

from __future__ import annotations

import json
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "crossrank"
STATIC = PACKAGE / "server" / "static"


def test_examples_are_the_packaged_demo_cases() -> None:
    static = json.loads((STATIC / "examples.json").read_text(encoding="utf-8"))
    demo = json.loads((PACKAGE / "data" / "demo_cases.json").read_text(encoding="utf-8"))
    assert static["cases"] == demo["cases"]


def test_page_has_no_inline_code_styles_or_external_resources() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []          # every script is a file
    assert re.findall(r"<style\b|\sstyle=|\son[a-z]+=", html) == []           # no inline styles or handlers
    assert re.findall(r"(?:src|href)=\"(?:https?:)?//", html) == []           # no CDN, no external fonts
    css = (STATIC / "style.css").read_text(encoding="utf-8")
    assert "@import" not in css and "url(" not in css


def test_script_never_parses_text_as_html() -> None:
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
