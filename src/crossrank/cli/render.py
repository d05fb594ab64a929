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


def result_rows(results: Sequence[RerankResult]) -> list[dict[str, object]]:
    return [
        {"rank": rank, "index": r.index, "score": r.score, "raw_score": r.raw_score, "chunk": r.chunk, "text": r.text}
        for rank, r in enumerate(results, start=1)
    ]


def results_table(results: Sequence[RerankResult], threshold: float = 0.5, title: str | None = None,
                  max_text: int = 160) -> Table:
    """Rank, normalised score (green above ``threshold``, red at or below), raw score and text."""
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("raw", justify="right", style="dim")
    table.add_column("#", justify="right", style="dim")
    table.add_column("text", overflow="fold")
    for rank, r in enumerate(results, start=1):
        style = "bold green" if r.score > threshold else "bold red"
        text = r.text if len(r.text) <= max_text else r.text[: max_text - 1] + "…"
        if r.chunk:
            text += f"  [chunk {r.chunk}]"
        table.add_row(str(rank), Text(f"{r.score:.4f}", style=style), f"{r.raw_score:.4f}", str(r.index), Text(text))
    return table


def format_results(results: Sequence[RerankResult], fmt: str) -> str:
    """Serialise results as json, jsonl or csv text."""
    rows = result_rows(results)
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["rank", "index", "score", "raw_score",
                                                                              "chunk", "text"])
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
