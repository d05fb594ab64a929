"""Reading passages for the CLI: one per line, JSONL with a ``text`` field (and an optional ``id``), or CSV/TSV
with a header naming a ``text`` column (and an optional ``id`` column).

Lines end at ``\\n`` (and ``\\r\\n``) only: a passage may hold any other character, U+2028 and form feeds included,
so passages are the file's lines.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import BinaryIO

ID_FIELDS = ("id", "_id")
TEXT_FIELDS = ("text", "passage")
CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}


@dataclass(frozen=True)
class Passages:
    """The texts to rank and, where the input named them, their ids (one per text; None where a line had none)."""

    texts: list[str]
    ids: list[str | None] | None = field(default=None)


def _lines(text: str) -> list[str]:
    return [line.removesuffix("\r") for line in text.split("\n")]


def _looks_like_jsonl(lines: list[str]) -> bool:
    first = next((line for line in lines if line.strip()), "")
    if not first.lstrip().startswith("{"):
        return False
    try:
        value = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and "text" in value


def _id_of(record: dict[str, object]) -> str | None:
    value = next((record[k] for k in ID_FIELDS if record.get(k) not in (None, "")), None)
    return None if value is None else str(value)


def _with_ids(texts: list[str], ids: list[str | None]) -> Passages:
    return Passages(texts, ids if any(i is not None for i in ids) else None)


def _parse_jsonl(lines: list[str], source: str) -> Passages:
    texts: list[str] = []
    ids: list[str | None] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}:{n}: not valid JSON ({exc.msg}); the file looked like JSONL") from exc
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise ValueError(f"{source}:{n}: a JSONL line needs a string field 'text'")
        texts.append(value["text"])
        ids.append(_id_of(value))
    return _with_ids(texts, ids)


def parse_csv(text: str, source: str, delimiter: str = ",") -> Passages:
    """A CSV/TSV with a header row: the ``text`` (or ``passage``) column is ranked, an ``id`` column kept."""
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    column = next((reader.fieldnames[columns.index(c)] for c in TEXT_FIELDS if c in columns), None) \
        if reader.fieldnames else None
    if column is None:
        raise ValueError(f"{source}: a CSV file needs a header row with a 'text' column; its header is "
                         f"{reader.fieldnames or 'empty'} (for one passage per line, give the file a .txt name)")
    id_column = next((reader.fieldnames[columns.index(c)] for c in ID_FIELDS if c in columns), None) \
        if reader.fieldnames else None
    texts: list[str] = []
    ids: list[str | None] = []
    for row in reader:
        value = row.get(column) or ""
        if value.strip():
            texts.append(value)
            ids.append(row.get(id_column) or None if id_column else None)
    return _with_ids(texts, ids)


def parse_passages(text: str, source: str = "input") -> Passages:
    """Blank lines are skipped; JSONL (every line an object with ``text``) is detected from its first line."""
    lines = _lines(text)
    if _looks_like_jsonl(lines):
        return _parse_jsonl(lines, source)
    return Passages([line for line in lines if line.strip()])


def decode(data: bytes, source: str, encoding: str) -> str:
    """``data`` as text, or a ValueError naming the file, line and column where it is not ``encoding``."""
    try:
        return data.decode(encoding)
    except LookupError as exc:
        raise ValueError(f"unknown encoding {encoding!r} (try utf-8, utf-16, latin-1 or cp1252)") from exc
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValueError(f"{source}:{line}:{column}: not valid {encoding} (byte 0x{data[exc.start]:02x}); "
                         "pass --encoding with the file's encoding, e.g. --encoding latin-1") from exc


def read_passages(path: str, stdin: BinaryIO, encoding: str = "utf-8") -> Passages:
    """``-`` reads standard input; any readable path works (a file, a pipe such as ``<(...)``, ``/dev/stdin``).
    ``.csv`` and ``.tsv`` files are read as tables with a header."""
    if path == "-":
        return parse_passages(decode(stdin.read(), "stdin", encoding), "stdin")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"passages file {path!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise IsADirectoryError(f"passages file {path!r} is a folder, not a file") from exc
    except PermissionError as exc:
        raise PermissionError(f"passages file {path!r} cannot be read (permission denied)") from exc
    text = decode(data, path, encoding).removeprefix("\ufeff")
    delimiter = CSV_DELIMITERS.get(path[path.rfind("."):].lower()) if "." in path else None
    if delimiter is not None:
        return parse_csv(text, path, delimiter)
    return parse_passages(text, path)
