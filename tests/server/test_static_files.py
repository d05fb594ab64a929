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


def test_scripts_never_parse_text_as_html() -> None:
    scripts = sorted(STATIC.glob("*.js"))
    assert len(scripts) > 1
    for path in scripts:
        js = path.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in js, (path.name, sink)


def test_page_loads_every_script_there_is_in_order() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    loaded = re.findall(r'<script src="([^"]+)" defer></script>', html)
    assert sorted(loaded) == sorted(p.name for p in STATIC.glob("*.js"))
    assert loaded[-1] == "app.js"                       # the others define what it uses
    assert loaded.index("logic.js") < loaded.index("table.js")


def test_every_sentence_in_both_languages_and_every_page_key_translated() -> None:
    tables = json.loads((STATIC / "i18n.json").read_text(encoding="utf-8"))
    assert tables["en"].keys() == tables["zh"].keys()
    assert all(tables["en"].values()) and all(tables["zh"].values())
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    scripts = "".join(p.read_text(encoding="utf-8") for p in STATIC.glob("*.js"))
    used = set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', html))
    used |= set(re.findall(r'\btn?\("([A-Za-z0-9]+)"', scripts))
    assert used and used <= tables["en"].keys()
    cases = json.loads((STATIC / "examples.json").read_text(encoding="utf-8"))["cases"]
    assert {c["name"] for c in cases} == tables["exampleNames"]["zh"].keys()
