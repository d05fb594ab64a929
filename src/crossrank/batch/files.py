"""Reading batch inputs (Parquet or JSONL, a file or a folder of files) in fixed-size parts, and writing parts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

PARQUET_SUFFIXES = (".parquet", ".pq")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
OUTPUT_FORMATS = ("parquet", "jsonl")


def input_files(path: Path) -> tuple[str, list[Path]]:
    """``("parquet" | "json", files)`` for a file, or for a folder of files of one kind (sorted by name)."""
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(("_", "."))) \
        if path.is_dir() else [path]
    kinds = {"parquet" if f.suffix.lower() in PARQUET_SUFFIXES else "json" if f.suffix.lower() in JSON_SUFFIXES
             else "?" for f in files}
    if not files or "?" in kinds or len(kinds) != 1:
        raise ValueError(f"input {path} must be a .parquet or .jsonl file, or a folder of only one of those kinds")
    return kinds.pop(), files


def count_rows(path: Path) -> int:
    """Rows of the input (Parquet metadata; non-blank lines of JSONL)."""
    kind, files = input_files(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    total = 0
    for f in files:
        with f.open("rb") as handle:
            total += sum(1 for line in handle if line.strip())
    return total


def _raw_chunks(path: Path, rows: int) -> Iterator[pa.Table]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind, files = input_files(path)
    for f in files:
        if kind == "parquet":
            for batch in pq.ParquetFile(f).iter_batches(batch_size=rows):
                yield pa.Table.from_batches([batch])
            continue
        with f.open(encoding="utf-8") as handle:
            records = []
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{f}:{number}: not a JSON line ({exc.msg})") from exc
                if len(records) == rows:
                    yield pa.Table.from_pylist(records)
                    records = []
            if records:
                yield pa.Table.from_pylist(records)


def read_parts(path: Path, rows: int) -> Iterator[pa.Table]:
    """The input as tables of exactly ``rows`` rows (the last may be shorter), always cut at the same places, so a
    restarted job finds the same parts."""
    import pyarrow as pa

    if rows < 1:
        raise ValueError("rows per part must be at least 1")
    pending: list[pa.Table] = []
    held = 0
    for chunk in _raw_chunks(path, rows):
        pending.append(chunk)
        held += chunk.num_rows
        while held >= rows:
            table = pa.concat_tables(pending, promote_options="default")
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, held = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
    if held:
        yield pa.concat_tables(pending, promote_options="default")


def write_table(table: pa.Table, path: Path) -> None:
    """Write Parquet or JSONL (by suffix) atomically: a part file either exists whole or not at all."""
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        pq.write_table(table, tmp)
    else:
        with tmp.open("w", encoding="utf-8") as handle:
            for record in table.to_pylist():
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_table(path: Path) -> pa.Table:
    """A part file written by :func:`write_table`, or any Parquet/JSONL output (tests, users)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.read_table(path)
    with path.open(encoding="utf-8") as handle:
        return pa.Table.from_pylist([json.loads(line) for line in handle if line.strip()])


def read_output(folder: Path) -> pa.Table:
    """Every part file of an output folder (local or Ray), concatenated in name order."""
    import pyarrow as pa

    parts = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(("_", "."))
                   and p.suffix in (".parquet", ".jsonl", ".json"))
    return pa.concat_tables([read_table(p) for p in parts], promote_options="default")
