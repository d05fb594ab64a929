"""Reading passages for the CLI: one per line, or JSONL with a ``text`` field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO


def _looks_like_jsonl(lines: list[str]) -> bool:
    first = next((line for line in lines if line.strip()), "")
    if not first.lstrip().startswith("{"):
        return False
    try:
        value = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and "text" in value


def parse_passages(text: str, source: str = "input") -> list[str]:
    """Blank lines are skipped; JSONL (every line an object with ``text``) is detected from its first line."""
    lines = text.splitlines()
    if not _looks_like_jsonl(lines):
        return [line for line in lines if line.strip()]
    out: list[str] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}:{n}: not valid JSON ({exc.msg}); the file looked like JSONL") from exc
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise ValueError(f"{source}:{n}: a JSONL line needs a string field 'text'")
        out.append(value["text"])
    return out


def read_passages(path: str, stdin: TextIO) -> list[str]:
    """``-`` reads standard input."""
    if path == "-":
        return parse_passages(stdin.read(), "stdin")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"passages file {path!r} does not exist")
    return parse_passages(p.read_text(encoding="utf-8"), path)
