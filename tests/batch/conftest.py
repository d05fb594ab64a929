"""A corpus of a few thousand (query, passage) rows, flat and grouped, in Parquet and JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossrank.testing import generated_sentences

N_QUERIES = 30
PER_QUERY = 100


def corpus_rows() -> list[dict[str, object]]:
    passages = list(generated_sentences(400, seed=21))
    queries = [f"query {q}: {passages[q * 7]}" for q in range(N_QUERIES)]
    return [{"id": q * PER_QUERY + i, "query": queries[q], "passage": passages[(q * 13 + i * 7) % len(passages)]}
            for q in range(N_QUERIES) for i in range(PER_QUERY)]


@pytest.fixture(scope="session")
def flat_rows() -> list[dict[str, object]]:
    return corpus_rows()


@pytest.fixture(scope="session")
def flat_parquet(tmp_path_factory: pytest.TempPathFactory, flat_rows: list[dict[str, object]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("input") / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(flat_rows), path, row_group_size=700)  # parts cut across row groups
    return path


@pytest.fixture(scope="session")
def grouped_jsonl(tmp_path_factory: pytest.TempPathFactory, flat_rows: list[dict[str, object]]) -> Path:
    path = tmp_path_factory.mktemp("input") / "grouped.jsonl"
    by_query: dict[str, list[str]] = {}
    for row in flat_rows:
        by_query.setdefault(str(row["query"]), []).append(str(row["passage"]))
    with path.open("w", encoding="utf-8") as handle:
        for n, (query, passages) in enumerate(by_query.items()):
            handle.write(json.dumps({"qid": n, "query": query, "passages": passages[: 20 + n]}, ensure_ascii=False))
            handle.write("\n")
    return path
