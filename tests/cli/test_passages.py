"""Reading passages for the CLI: plain lines, JSONL with ``text`` (and ``id``), CSV/TSV with a header, from a file,
a pipe or stdin, in any encoding the user names."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest

from crossrank.cli.passages import Passages, parse_passages, read_passages


def texts(text: str) -> list[str]:
    return parse_passages(text).texts


def test_one_passage_per_line_blank_lines_skipped() -> None:
    assert texts("first\n\n  \nsecond\nthird") == ["first", "second", "third"]


def test_windows_line_endings() -> None:
    assert texts("a\r\nb\r\n") == ["a", "b"]


def test_only_newlines_end_a_passage() -> None:
    """U+2028, form feeds, vertical tabs and U+0085 are characters of a passage, as every line-based tool sees them."""
    assert texts("one\u2028still one\nform\x0cfeed\nnel\x85x\x0by\n") == ["one\u2028still one", "form\x0cfeed",
                                                                         "nel\x85x\x0by"]


def test_empty_input_gives_no_passages() -> None:
    assert texts("") == []
    assert texts("\n\n") == []


def test_jsonl_with_text_field_keeps_the_ids() -> None:
    lines = [{"id": 1, "text": "北京是中国的首都。"}, {"text": "line\nbreak inside", "score": 0.3},
             {"_id": "d9", "text": "x"}]
    text = "\n".join(json.dumps(v, ensure_ascii=False) for v in lines) + "\n\n"
    assert parse_passages(text) == Passages(["北京是中国的首都。", "line\nbreak inside", "x"], ["1", None, "d9"])


def test_jsonl_without_ids_has_none() -> None:
    assert parse_passages('{"text": "a"}\n{"text": "b"}').ids is None


def test_jsonl_detected_after_leading_blank_lines() -> None:
    assert texts('\n\n{"text": "a"}\n{"text": "b"}') == ["a", "b"]


@pytest.mark.parametrize("first", ['{"title": "no text field"}', "{not json at all", '["text"]', "{} braces in prose"])
def test_lines_that_are_not_jsonl_passages_stay_plain_text(first: str) -> None:
    assert texts(first + "\nsecond") == [first, "second"]


def test_broken_jsonl_line_names_source_and_line() -> None:
    with pytest.raises(ValueError, match=r"docs\.jsonl:3: not valid JSON"):
        parse_passages('{"text": "a"}\n\n{"text": oops}\n', "docs.jsonl")


@pytest.mark.parametrize("line", ['{"title": "x"}', '{"text": 3}', '"just a string"', '{"text": null}'])
def test_jsonl_line_without_string_text_refused(line: str) -> None:
    with pytest.raises(ValueError, match=r"in:2: a JSONL line needs a string field 'text'"):
        parse_passages('{"text": "a"}\n' + line, "in")


def test_read_from_stdin() -> None:
    assert read_passages("-", io.BytesIO(b"x\ny\n")).texts == ["x", "y"]


def test_read_from_file_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("\ufeff咖啡 🙂\nsecond\n", encoding="utf-8")
    assert read_passages(str(path), io.BytesIO(b"ignored")).texts == ["咖啡 🙂", "second"]


def test_a_pipe_and_dev_null_are_read_like_files() -> None:
    """What the shell hands over for ``-p <(printf 'a\\nb\\n')``: a /dev/fd path that is not a regular file."""
    read, write = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write, b"a\nb\n"), os.close(write)))
    writer.start()
    try:
        assert read_passages(f"/dev/fd/{read}", io.BytesIO()).texts == ["a", "b"]
    finally:
        writer.join()
        os.close(read)
    assert read_passages(os.devnull, io.BytesIO()).texts == []


def test_another_encoding_when_named(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("café\nnaïve\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt:1:4: not valid utf-8 \(byte 0xe9\); pass --encoding"):
        read_passages(str(path), io.BytesIO())
    assert read_passages(str(path), io.BytesIO(), encoding="latin-1").texts == ["café", "naïve"]
    with pytest.raises(ValueError, match="unknown encoding 'klingon'"):
        read_passages(str(path), io.BytesIO(), encoding="klingon")


def test_csv_and_tsv_are_tables_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_text('id,text\nd1,"Paris, the capital"\nd2,"two\nlines"\n', encoding="utf-8")
    assert read_passages(str(path), io.BytesIO()) == Passages(["Paris, the capital", "two\nlines"], ["d1", "d2"])
    tsv = tmp_path / "docs.tsv"
    tsv.write_text("Passage\tscore\nfirst\t1\nsecond\t2\n", encoding="utf-8")
    assert read_passages(str(tsv), io.BytesIO()) == Passages(["first", "second"])


def test_a_csv_without_a_text_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_text("title,body\na,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"docs\.csv: a CSV file needs a header row with a 'text' column"):
        read_passages(str(path), io.BytesIO())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"passages file .* does not exist"):
        read_passages(str(tmp_path / "absent.txt"), io.BytesIO())


def test_a_directory_is_not_a_passages_file(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a folder"):
        read_passages(str(tmp_path), io.BytesIO())
