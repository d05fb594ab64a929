"""score_table and ranks: the one place where batch rows become scores and ranks."""

from __future__ import annotations

import pyarrow as pa
import pytest

from crossrank import Reranker
from crossrank.batch.table import FLAT, GROUPED, add_ranks, input_shape, ranks_by_query, score_table


def test_input_shape() -> None:
    assert input_shape(["query", "passage", "id"]) == FLAT
    assert input_shape(["query", "passages"]) == GROUPED
    with pytest.raises(ValueError, match="'query'"):
        input_shape(["passage"])
    with pytest.raises(ValueError, match="'passage'"):
        input_shape(["query", "text"])


def test_ranks_by_query_follow_rank_semantics() -> None:
    queries = ["a", "b", "a", "a", "b"]
    raw = [0.5, -1.0, 2.0, 0.5, 3.0]
    # a: rows 0, 2, 3 → 2.0 first, then the tie 0.5/0.5 in input order; b: rows 1, 4 → 3.0 first.
    assert ranks_by_query(queries, raw) == [2, 2, 1, 3, 1]


def test_score_table_flat_equals_library(tiny_reranker: Reranker) -> None:
    pairs = [("q1", "alpha beta"), ("q2", "gamma"), ("q1", "delta epsilon zeta")]
    table = pa.table({"query": [q for q, _ in pairs], "passage": [p for _, p in pairs], "id": [7, 8, 9]})
    out = score_table(tiny_reranker, table)
    assert out.column("id").to_pylist() == [7, 8, 9]
    assert out.column("score").to_pylist() == tiny_reranker.score(pairs)
    assert out.column("raw_score").to_pylist() == tiny_reranker.score(pairs, normalize=False)
    raw_out = score_table(tiny_reranker, table, normalize=False)
    assert raw_out.column("score").to_pylist() == raw_out.column("raw_score").to_pylist()
    ranked = add_ranks(out)
    assert ranked.column("rank").to_pylist() == ranks_by_query([q for q, _ in pairs], out["raw_score"].to_pylist())


def test_score_table_grouped_explodes_and_ranks_like_rerank(tiny_reranker: Reranker) -> None:
    passages = ["alpha beta", "gamma", "delta epsilon zeta", "eta"]
    table = pa.table({"qid": [1, 2], "query": ["first query", "second"], "passages": [passages, passages[:2]]})
    out = score_table(tiny_reranker, table)
    assert out.num_rows == 6
    assert out.column("qid").to_pylist() == [1, 1, 1, 1, 2, 2]
    assert out.column("passage").to_pylist() == passages + passages[:2]
    expected = tiny_reranker.rerank("first query", passages)
    ranks = out.column("rank").to_pylist()[:4]
    assert [passages[i] for i in sorted(range(4), key=lambda i: ranks[i])] == [r.text for r in expected]
    all_pairs = [("first query", p) for p in passages] + [("second", p) for p in passages[:2]]
    assert out.column("score").to_pylist() == tiny_reranker.score(all_pairs)
    assert sorted(out.column("rank").to_pylist()[4:]) == [1, 2]


def test_exploded_passages_keep_their_position() -> None:
    import pyarrow as pa

    from crossrank.batch.table import explode_grouped

    table = pa.table({"query": ["a", "b", "c"], "passages": [["x", "y", "z"], None, ["w"]]})
    flat, parents = explode_grouped(table)
    assert flat.column("passage_index").to_pylist() == [0, 1, 2, 0]
    assert flat.column("passage").to_pylist() == ["x", "y", "z", "w"]
    assert parents == [0, 0, 0, 2]
