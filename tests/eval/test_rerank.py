from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crossrank.eval.cache import ScoreCache
from crossrank.eval.datasets import load_beir_dir
from crossrank.eval.metrics import evaluate_per_query
from crossrank.eval.rerank import RerankInterrupted, estimate_tokens, rerank_run, token_chunks


class Oracle:
    """A scorer that knows the judgments: the relevant passage gets the highest score."""

    def __init__(self, relevant: dict[str, str]) -> None:
        self.relevant = relevant  # passage text -> its grade as a score
        self.calls: list[int] = []

    def score(self, pairs: Any, *, normalize: bool = True, long_passages: str | None = None,
              progress: Any = None) -> list[float]:
        assert normalize is False  # eval ranks on raw logits
        self.calls.append(len(pairs))
        return [float(self.relevant.get(p, 0.0)) for _, p in pairs]

    def describe(self) -> dict[str, Any]:
        return {"model": "oracle", "dtype": "fp32", "max_length": 512}


class Counting:
    """Wraps a real Reranker: counts the pairs it scores and can crash after some calls."""

    def __init__(self, inner: Any, crash_after: int | None = None, batch_tokens: int | None = None) -> None:
        self.inner, self.crash_after, self.pairs, self.calls = inner, crash_after, 0, 0
        self.batch_tokens = batch_tokens

    def score(self, pairs: Any, **kwargs: Any) -> list[float]:
        if self.crash_after is not None and self.calls >= self.crash_after:
            raise KeyboardInterrupt("simulated crash")
        self.calls += 1
        self.pairs += len(pairs)
        return list(self.inner.score(pairs, **kwargs))

    def describe(self) -> dict[str, Any]:
        info = dict(self.inner.describe())
        if self.batch_tokens is not None:
            info["max_batch_tokens"] = self.batch_tokens
        return info


def test_putting_the_relevant_document_first_raises_ndcg_as_expected(toy_dir: Path) -> None:
    data = load_beir_dir(toy_dir)
    # q3's only relevant document (grade 1) sits third in the first stage.
    first = {"q3": {"d1": 3.0, "d2": 2.0, "d6": 1.0}}
    oracle = Oracle({data.corpus["d6"]: 5.0})
    reranked, stats = rerank_run(oracle, data, first)
    before = evaluate_per_query({"q3": data.qrels["q3"]}, first, ["ndcg@10"])["ndcg@10"]["q3"]
    after = evaluate_per_query({"q3": data.qrels["q3"]}, reranked, ["ndcg@10"])["ndcg@10"]["q3"]
    assert before == pytest.approx(1 / 2)  # 1/log2(3 + 1) over an ideal of 1
    assert after == pytest.approx(1.0)
    assert stats.pairs == stats.scored == 3 and stats.cached == 0


def test_pairs_of_many_queries_share_one_call(toy_dir: Path) -> None:
    data = load_beir_dir(toy_dir)
    first = {"q1": {"d1": 1.0, "d2": 0.5}, "q2": {"d3": 1.0, "d4": 0.5}, "q3": {"d6": 1.0}}
    oracle = Oracle({})
    rerank_run(oracle, data, first)
    assert oracle.calls == [5]


def test_second_run_scores_nothing_and_gives_the_same_scores(toy_dir: Path, tiny_reranker: Any,
                                                             tmp_path: Path) -> None:
    data = load_beir_dir(toy_dir)
    first = {q: dict.fromkeys(data.corpus, 0.0) for q in data.queries}
    with ScoreCache(tmp_path / "scores.sqlite") as cache:
        scorer = Counting(tiny_reranker)
        run1, stats1 = rerank_run(scorer, data, first, cache=cache)
        assert stats1.scored == scorer.pairs == 18
    with ScoreCache(tmp_path / "scores.sqlite") as cache:  # a new process, as after a restart
        again = Counting(tiny_reranker)
        run2, stats2 = rerank_run(again, data, first, cache=cache)
    assert again.pairs == 0 and stats2.scored == 0 and stats2.cached == 18
    assert run2 == run1
    direct = tiny_reranker.score([(data.queries["q1"], data.corpus["d2"])], normalize=False)[0]
    assert run1["q1"]["d2"] == pytest.approx(direct, abs=1e-5)


def test_ctrl_c_keeps_every_batch_scored_before_it_and_resume_scores_only_the_rest(
        toy_dir: Path, tiny_reranker: Any, tmp_path: Path) -> None:
    data = load_beir_dir(toy_dir)
    first = {q: dict.fromkeys(data.corpus, 0.0) for q in data.queries}
    crashing = Counting(tiny_reranker, crash_after=2, batch_tokens=40)  # a few pairs per model batch
    with ScoreCache(tmp_path / "s.sqlite") as cache, pytest.raises(RerankInterrupted) as stopped:
        rerank_run(crashing, data, first, cache=cache)
    assert 0 < crashing.pairs < 18
    assert (stopped.value.kept, stopped.value.todo) == (crashing.pairs, 18)
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        assert cache.count() == crashing.pairs  # each batch committed as soon as it was scored
        resumed = Counting(tiny_reranker, batch_tokens=40)
        _, stats = rerank_run(resumed, data, first, cache=cache)
    assert resumed.pairs == 18 - crashing.pairs and stats.cached == crashing.pairs


def test_calls_hold_about_one_batch_of_tokens() -> None:
    assert token_chunks([10, 10, 10, 10, 10], 25) == [(0, 2), (2, 4), (4, 5)]
    assert token_chunks([100, 5, 5], 20) == [(0, 1), (1, 3)]  # a pair over the budget goes alone
    assert token_chunks([], 20) == []
    assert estimate_tokens("q" * 40, "p" * 4000, 512) == 512
    assert estimate_tokens("abcd", "efgh", 512) == 6


def test_progress_is_counted_in_tokens(toy_dir: Path) -> None:
    """A long pair weighs more than a short one, so the ETA follows the work, not the count of pairs."""
    data = load_beir_dir(toy_dir)
    first = {"q1": {"d5": 1.0, "d3": 0.5}}
    seen: list[tuple[int, int]] = []
    rerank_run(Oracle({}), data, first, progress=lambda done, total: seen.append((done, total)))
    total = sum(estimate_tokens(data.queries["q1"], data.corpus[d], 512) for d in ("d5", "d3"))
    assert seen[0] == (0, total) and seen[-1] == (total, total)


def test_a_changed_text_or_another_model_is_scored_afresh(toy_dir: Path, tmp_path: Path) -> None:
    data = load_beir_dir(toy_dir)
    first = {"q1": {"d1": 1.0, "d2": 0.5}}
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        rerank_run(Oracle({}), data, first, cache=cache)
        changed = type(data)(data.name, data.path, {**data.corpus, "d1": "another text"}, data.queries, data.qrels)
        oracle = Oracle({})
        _, stats = rerank_run(oracle, changed, first, cache=cache)
        assert (stats.scored, stats.cached) == (1, 1)

        class Other(Oracle):
            def describe(self) -> dict[str, Any]:
                return {"model": "other"}

        _, stats = rerank_run(Other({}), data, first, cache=cache)
        assert stats.scored == 2
