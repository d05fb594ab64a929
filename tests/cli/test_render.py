"""Result tables (colour by threshold) and file formats (json, jsonl, csv)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console
from rich.text import Text

from crossrank.cli.render import FORMATS, format_results, result_rows, results_table
from crossrank.core.ranking import RerankResult

RESULTS = [
    RerankResult(index=2, score=0.9, raw_score=2.1972, text="北京是中国的首都。"),
    RerankResult(index=0, score=0.5, raw_score=0.0, text="exactly at the threshold", chunk=3),
    RerankResult(index=1, score=0.1, raw_score=-2.1972, text='quote " comma, and\nnewline 🙂'),
]


def score_cells(results: list[RerankResult], threshold: float) -> list[Text]:
    table = results_table(results, threshold)
    cells = list(table.columns[1].cells)
    assert all(isinstance(c, Text) for c in cells)
    return cells  # type: ignore[return-value]


def test_score_green_above_threshold_red_at_or_below() -> None:
    cells = score_cells(RESULTS, 0.5)
    assert [c.plain for c in cells] == ["0.9000", "0.5000", "0.1000"]
    assert [str(c.style) for c in cells] == ["bold green", "bold red", "bold red"]


def test_threshold_moves_the_colour() -> None:
    assert [str(c.style) for c in score_cells(RESULTS, 0.05)] == ["bold green"] * 3
    assert [str(c.style) for c in score_cells(RESULTS, 0.9)] == ["bold red"] * 3


def test_colours_reach_the_terminal() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=120)
    console.print(results_table(RESULTS[:1], 0.5))
    console.print(results_table(RESULTS[2:], 0.5))
    written = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[1;32m0.9000" in written
    assert "\x1b[1;31m0.1000" in written


def test_table_columns_and_rows() -> None:
    table = results_table(RESULTS, title="my query")
    assert str(table.title) == "my query"
    assert [c.header for c in table.columns] == ["rank", "score", "raw", "#", "text"]
    assert list(table.columns[0].cells) == ["1", "2", "3"]
    assert list(table.columns[2].cells) == ["2.1972", "0.0000", "-2.1972"]
    assert [str(c) for c in table.columns[3].cells] == ["2", "0", "1"]
    texts = [c.plain for c in table.columns[4].cells]  # type: ignore[union-attr]
    assert texts[0] == "北京是中国的首都。"
    assert texts[1] == "exactly at the threshold  [chunk 3]"


def test_long_text_cut_with_an_ellipsis() -> None:
    long = RerankResult(index=0, score=0.7, raw_score=0.8, text="x" * 500)
    cell = next(iter(results_table([long], max_text=40).columns[4].cells))
    assert cell.plain == "x" * 39 + "…"  # type: ignore[union-attr]


def test_text_with_markup_is_shown_literally() -> None:
    r = RerankResult(index=0, score=0.7, raw_score=0.8, text="[bold]not markup[/bold]")
    console = Console(file=io.StringIO(), width=120)
    console.print(results_table([r]))
    assert "[bold]not markup[/bold]" in console.file.getvalue()  # type: ignore[attr-defined]


def test_empty_results_give_an_empty_table() -> None:
    assert results_table([]).row_count == 0


def test_rows_rank_from_one() -> None:
    rows = result_rows(RESULTS)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[1] == {"rank": 2, "index": 0, "score": 0.5, "raw_score": 0.0, "chunk": 3,
                       "text": "exactly at the threshold"}


def test_json_round_trip_keeps_unicode() -> None:
    text = format_results(RESULTS, "json")
    assert "北京" in text  # not \\u escapes
    assert json.loads(text) == result_rows(RESULTS)


def test_jsonl_one_object_per_line() -> None:
    lines = format_results(RESULTS, "jsonl").splitlines()
    assert [json.loads(line) for line in lines] == result_rows(RESULTS)


def test_csv_round_trip_with_quotes_commas_newlines() -> None:
    rows = list(csv.DictReader(io.StringIO(format_results(RESULTS, "csv"))))
    assert [r["text"] for r in rows] == [r.text for r in RESULTS]
    assert [float(r["score"]) for r in rows] == [r.score for r in RESULTS]
    assert [int(r["index"]) for r in rows] == [r.index for r in RESULTS]


def test_empty_results_in_every_file_format() -> None:
    assert json.loads(format_results([], "json")) == []
    assert format_results([], "jsonl") == ""
    assert format_results([], "csv").strip() == "rank,index,score,raw_score,chunk,text"


def test_unknown_format_refused() -> None:
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        format_results(RESULTS, "xml")
    with pytest.raises(ValueError):
        format_results(RESULTS, "table")  # tables are rendered, not serialised
    assert set(FORMATS) == {"table", "json", "jsonl", "csv"}


def test_ids_of_the_input_reach_every_format() -> None:
    ids = [f"doc-{i}" for i in range(len(RESULTS))]
    rows = result_rows(RESULTS, ids)
    assert [row["id"] for row in rows] == [ids[r.index] for r in RESULTS]
    assert list(rows[0])[:3] == ["rank", "index", "id"]
    first_csv = next(csv.DictReader(io.StringIO(format_results(RESULTS, "csv", ids))))
    assert first_csv["id"] == ids[RESULTS[0].index]
    assert "id" not in result_rows(RESULTS)[0]


def test_brackets_in_titles_and_ids_are_printed_as_they_are() -> None:
    console = Console(width=200, record=True)
    console.print(results_table(RESULTS, title="what is [bold]x[/]?", ids=["[a]"] * len(RESULTS)))
    text = console.export_text()
    assert "what is [bold]x[/]?" in text and "[a]" in text
