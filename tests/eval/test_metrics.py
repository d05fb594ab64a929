from __future__ import annotations

import random

import pytest

from crossrank.eval.metrics import compare, evaluate_per_query, paired_p_value, parse_metrics


def random_case(seed: int = 7, queries: int = 30, docs: int = 40) -> tuple[dict[str, dict[str, int]],
                                                                          dict[str, dict[str, float]]]:
    """Graded judgments and a run with distinct scores (so tie-breaking conventions cannot differ)."""
    rng = random.Random(seed)
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    values = rng.sample(range(1, 10**6), queries * docs)
    for q in range(queries):
        qid = f"q{q}"
        judged = rng.sample(range(docs + 20), rng.randint(1, 8))  # some relevant documents never retrieved
        qrels[qid] = {f"d{d}": rng.randint(0, 3) for d in judged}
        qrels[qid][f"d{judged[0]}"] = rng.randint(1, 3)  # at least one relevant
        run[qid] = {f"d{d}": values[q * docs + d] / 1e6 for d in range(docs)}
    return qrels, run


def pytrec(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], measure: str) -> dict[str, float]:
    import pytrec_eval

    name = measure.split(".")[0]
    key = measure.replace(".", "_")
    results = pytrec_eval.RelevanceEvaluator(qrels, {measure}).evaluate(run)
    return {q: r[key if key in r else name] for q, r in results.items()}


@pytest.mark.parametrize(("ranx_name", "trec_measure"), [
    ("ndcg@10", "ndcg_cut.10"), ("recall@20", "recall.20"), ("precision@5", "P.5"), ("map@100", "map_cut.100"),
])
def test_ranx_equals_pytrec_eval_per_query(ranx_name: str, trec_measure: str) -> None:
    qrels, run = random_case()
    ours = evaluate_per_query(qrels, run, [ranx_name])[ranx_name]
    reference = pytrec(qrels, run, trec_measure)
    assert set(ours) == set(reference)
    for qid in reference:
        assert ours[qid] == pytest.approx(reference[qid], abs=1e-6), qid


def test_mrr_at_10_equals_reciprocal_rank_of_the_top_10() -> None:
    qrels, run = random_case(seed=3)
    ours = evaluate_per_query(qrels, run, ["mrr@10"])["mrr@10"]
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:10]) for q, docs in run.items()}
    reference = pytrec(qrels, top10, "recip_rank")
    for qid in reference:
        assert ours[qid] == pytest.approx(reference[qid], abs=1e-9)


def test_queries_without_results_count_as_zero() -> None:
    qrels = {"a": {"d1": 1}, "b": {"d2": 1}}
    per_query = evaluate_per_query(qrels, {"a": {"d1": 1.0}, "b": {}}, ["ndcg@10"])["ndcg@10"]
    assert per_query == {"a": 1.0, "b": 0.0}


def test_compare_counts_wins_and_tests_significance() -> None:
    base = {"m": {"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.2}}
    new = {"m": {"a": 0.4, "b": 0.5, "c": 0.2, "d": 0.6}}
    c = compare(base, new, "m")
    assert (c.wins, c.losses, c.ties) == (2, 1, 1)
    assert c.delta == pytest.approx((0.4 + 0.5 + 0.2 + 0.6 - 1.1) / 4)
    from scipy import stats

    assert c.p_value == pytest.approx(stats.ttest_rel([0.4, 0.5, 0.2, 0.6], [0.1, 0.5, 0.3, 0.2]).pvalue)
    assert paired_p_value([0.1, 0.2], [0.1, 0.2]) == 1.0


def test_parse_metrics() -> None:
    assert parse_metrics(" NDCG@10, mrr@10,ndcg@10 ") == ["ndcg@10", "mrr@10"]
    with pytest.raises(ValueError):
        parse_metrics(" , ")
