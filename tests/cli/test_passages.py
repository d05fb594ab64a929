"""Reading passages for the CLI: plain lines or JSONL with a ``text`` field, from a file or stdin."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from crossrank.cli.passages import parse_passages, read_passages


def test_one_passage_per_line_blank_lines_skipped() -> None:
    assert parse_passages("first\n\n  \nsecond\nthird") == ["first", "second", "third"]


def test_windows_line_endings() -> None:
    assert parse_passages("a\r\nb\r\n") == ["a", "b"]


def test_empty_input_gives_no_passages() -> None:
    assert parse_passages("") == []
    assert parse_passages("\n\n") == []


def test_jsonl_with_text_field() -> None:
    lines = [{"id": 1, "text": "北京是中国的首都。"}, {"text": "line\nbreak inside", "score": 0.3}]
    text = "\n".join(json.dumps(v, ensure_ascii=False) for v in lines) + "\n\n"
    assert parse_passages(text) == ["北京是中国的首都。", "line\nbreak inside"]


def test_jsonl_detected_after_leading_blank_lines() -> None:
    assert parse_passages('\n\n{"text": "a"}\n{"text": "b"}') == ["a", "b"]


@pytest.mark.parametrize("first", ['{"title": "no text field"}', "{not json at all", '["text"]', "{} braces in prose"])
def test_lines_that_are_not_jsonl_passages_stay_plain_text(first: str) -> None:
    assert parse_passages(first + "\nsecond") == [first, "second"]


def test_broken_jsonl_line_names_source_and_line() -> None:
    with pytest.raises(ValueError, match=r"docs\.jsonl:3: not valid JSON"):
        parse_passages('{"text": "a"}\n\n{"text": oops}\n', "docs.jsonl")


@pytest.mark.parametrize("line", ['{"title": "x"}', '{"text": 3}', '"just a string"', '{"text": null}'])
def test_jsonl_line_without_string_text_refused(line: str) -> None:
    with pytest.raises(ValueError, match=r"in:2: a JSONL line needs a string field 'text'"):
        parse_passages('{"text": "a"}\n' + line, "in")


def test_read_from_stdin() -> None:
    assert read_passages("-", io.StringIO("x\ny\n")) == ["x", "y"]


def test_read_from_file_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("咖啡 🙂\nsecond\n", encoding="utf-8")
    assert read_passages(str(path), io.StringIO("ignored")) == ["咖啡 🙂", "second"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"passages file .* does not exist"):
        read_passages(str(tmp_path / "absent.txt"), io.StringIO())


def test_a_directory_is_not_a_passages_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_passages(str(tmp_path), io.StringIO())
