"""Arrow tables in, scored tables out: the one place where batch jobs (local and Ray Data) turn rows into scores.

Two input shapes: *flat* rows with ``query`` and ``passage`` columns, or *grouped* rows with ``query`` and a list column
``passages``. Grouped rows are exploded to one output row per passage (other columns repeated, and
``passage_index``: the passage's position in its row's list). Every output row gets
``score`` (sigmoid unless ``normalize=False``) and ``raw_score`` (the logit); ``rank`` (1 = best) is per query: within
the row for grouped input (here), across all rows of the same query for flat input (:func:`ranks_by_query`, run once
every row is scored). Scores come from :meth:`crossrank.Reranker.score`, ranks from :func:`crossrank.core.ranking.rank`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from crossrank.core.ranking import finalize, rank

if TYPE_CHECKING:
    import pyarrow as pa

    from crossrank.reranker import Reranker

FLAT = "flat"
GROUPED = "grouped"
OUTPUT_COLUMNS = ("score", "raw_score", "rank")


def input_shape(column_names: Sequence[str]) -> str:
    """``flat`` for query + passage columns, ``grouped`` for query + passages (a list per row)."""
    names = set(column_names)
    if "query" not in names:
        raise ValueError(f"the input needs a 'query' column; it has {sorted(names)}")
    if "passage" in names:
        return FLAT
    if "passages" in names:
        return GROUPED
    raise ValueError(f"the input needs a 'passage' column (or a list column 'passages'); it has {sorted(names)}")


def ranks_by_query(queries: Sequence[str], raw: Sequence[float]) -> list[int]:
    """Rank (1 = best) of every row among the rows of the same query, with :func:`crossrank.core.ranking.rank`'s order
    (best logit first, ties in input order)."""
    rows_of: dict[str, list[int]] = {}
    for row, query in enumerate(queries):
        rows_of.setdefault(query, []).append(row)
    ranks = [0] * len(queries)
    for rows in rows_of.values():
        ordered = rank([raw[r] for r in rows], [""] * len(rows))
        for position, result in enumerate(ordered, start=1):
            ranks[rows[result.index]] = position
    return ranks


POSITION_COLUMN = "passage_index"


def explode_grouped(table: pa.Table) -> tuple[pa.Table, list[int]]:
    """One row per passage of a grouped table (other columns repeated, ``passage_index`` the passage's position in
    its list); also each output row's input row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = table.column("passages").combine_chunks()
    parents = pc.list_parent_indices(lists).to_pylist()
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_pylist()
    positions = [i for n in lengths for i in range(n)]
    flat = table.drop_columns([c for c in ("passages", POSITION_COLUMN) if c in table.column_names])
    flat = flat.take(pa.array(parents, type=pa.int64()))
    flat = flat.append_column(POSITION_COLUMN, pa.array(positions, type=pa.int64()))
    return flat.append_column("passage", pc.list_flatten(lists).cast(pa.string())), parents


def score_table(reranker: Reranker, table: pa.Table, *, normalize: bool = True, long_passages: str | None = None,
                progress: Any = None) -> pa.Table:
    """Add ``score`` and ``raw_score`` to every row (and ``rank`` for grouped input, whose rows are exploded)."""
    import pyarrow as pa

    shape = input_shape(table.column_names)
    parents: list[int] | None = None
    if shape == GROUPED:
        table, parents = explode_grouped(table)
    existing = [c for c in OUTPUT_COLUMNS if c in table.column_names]
    if existing:
        table = table.drop_columns(existing)  # a re-scored output file gets fresh scores, not two columns of each
    pairs = list(zip(table.column("query").to_pylist(), table.column("passage").to_pylist(), strict=True))
    raw = reranker.score(pairs, normalize=False, long_passages=long_passages, progress=progress)
    table = table.append_column("score", pa.array(finalize(raw, normalize), type=pa.float64()))
    table = table.append_column("raw_score", pa.array(raw, type=pa.float64()))
    if parents is not None:
        # Each input row is its own group: keyed by row number, not by query text.
        table = table.append_column("rank", pa.array(ranks_by_query([str(p) for p in parents], raw), type=pa.int64()))
    return table


def add_ranks(table: pa.Table) -> pa.Table:
    """Add ``rank`` per query over all of ``table``'s rows (flat input, every row scored)."""
    import pyarrow as pa

    if "rank" in table.column_names:
        table = table.drop_columns(["rank"])
    ranks = ranks_by_query(table.column("query").to_pylist(), table.column("raw_score").to_pylist())
    return table.append_column("rank", pa.array(ranks, type=pa.int64()))
