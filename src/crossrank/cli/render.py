"""Turning ranked results into terminal tables and files (table, json, jsonl, csv)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from crossrank.core.ranking import RerankResult

FORMATS = ("table", "json", "jsonl", "csv")


def result_rows(results: Sequence[RerankResult], ids: Sequence[str | None] | None = None) -> list[dict[str, object]]:
    """One dict per result, best first; with ``ids`` (one per input passage) each row also names its passage's id."""
    rows: list[dict[str, object]] = []
    for rank, r in enumerate(results, start=1):
        row: dict[str, object] = {"rank": rank, "index": r.index}
        if ids is not None:
            row["id"] = ids[r.index]
        row.update({"score": r.score, "raw_score": r.raw_score, "chunk": r.chunk, "text": r.text})
        rows.append(row)
    return rows


def results_table(results: Sequence[RerankResult], threshold: float = 0.5, title: str | None = None,
                  max_text: int = 160, ids: Sequence[str | None] | None = None) -> Table:
    """Rank, normalised score (green above ``threshold``, red at or below), raw score, input index (or id) and text."""
    table = Table(title=Text(title) if title is not None else None, title_justify="left", expand=False)
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("raw", justify="right", style="dim")
    table.add_column("#" if ids is None else "id", justify="right", style="dim")
    table.add_column("text", overflow="fold")
    for rank, r in enumerate(results, start=1):
        style = "bold green" if r.score > threshold else "bold red"
        text = r.text if len(r.text) <= max_text else r.text[: max_text - 1] + "…"
        if r.chunk:
            text += f"  [chunk {r.chunk}]"
        table.add_row(str(rank), Text(f"{r.score:.4f}", style=style), f"{r.raw_score:.4f}",
                      Text(str(r.index) if ids is None else ids[r.index] or ""), Text(text))
    return table


def format_results(results: Sequence[RerankResult], fmt: str, ids: Sequence[str | None] | None = None) -> str:
    """Serialise results as json, jsonl or csv text."""
    rows = result_rows(results, ids)
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if fmt == "csv":
        buf = io.StringIO()
        header = ["rank", "index", *(["id"] if ids is not None else []), "score", "raw_score", "chunk", "text"]
        writer = csv.DictWriter(buf, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
