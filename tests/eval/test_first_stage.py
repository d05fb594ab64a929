from __future__ import annotations

import math
from pathlib import Path

import pytest

from crossrank.eval.datasets import load_beir_dir
from crossrank.eval.first_stage import BM25Index, bm25_run, first_stage_run
from crossrank.eval.trec import write_trec_run

# The toy corpus counted by hand: term frequencies and lengths after tokenising (none of these words is a stopword
# and the English stemmer leaves each unchanged).
TF = {
    "d1": {"cat": 1, "dog": 1},
    "d2": {"dog": 1, "bird": 2},
    "d3": {"fish": 1},
    "d4": {"cat": 2, "fish": 1, "tree": 1},
}
DOCS = {"d1": "cat dog", "d2": "dog bird bird", "d3": "fish", "d4": "cat cat fish tree"}
K1, B = 1.5, 0.75  # bm25s's defaults, Lucene variant


def expected_bm25(query_terms: list[str], doc: str) -> float:
    """Lucene BM25 from the formula: sum of idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))."""
    n = len(TF)
    avgdl = sum(sum(tf.values()) for tf in TF.values()) / n
    dl = sum(TF[doc].values())
    total = 0.0
    for term in query_terms:
        df = sum(term in tf for tf in TF.values())
        tf = TF[doc].get(term, 0)
        if tf:
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            total += idf * tf / (tf + K1 * (1 - B + B * dl / avgdl))
    return total


def test_bm25_scores_match_the_formula_by_hand() -> None:
    index = BM25Index(list(DOCS), list(DOCS.values()))
    run = index.search({"q": "cat bird"}, top_k=10)["q"]
    expected = {d: expected_bm25(["cat", "bird"], d) for d in DOCS}
    assert set(run) == {d for d, s in expected.items() if s > 0} == {"d1", "d2", "d4"}
    for doc, score in run.items():
        assert score == pytest.approx(expected[doc], rel=1e-5)
    # Best first, as the formula orders them.
    assert list(run) == sorted(run, key=lambda d: -expected[d])


def test_stemmer_and_stopwords_apply_to_queries() -> None:
    index = BM25Index(list(DOCS), list(DOCS.values()))
    plain = index.search({"q": "cat bird"}, top_k=10)["q"]
    inflected = index.search({"q": "the cats and birds"}, top_k=10)["q"]
    assert inflected == pytest.approx(plain)


def test_no_stemmer_for_a_language_without_one() -> None:
    index = BM25Index(list(DOCS), list(DOCS.values()), language="klingon")
    assert index.tokenize.stemmer is None and index.tokenize.stopwords is None
    assert index.search({"q": "cats"}, top_k=10)["q"] == {}


def test_top_k_and_unmatched_queries(toy_dir: Path) -> None:
    data = load_beir_dir(toy_dir)
    run = bm25_run(data, top_k=1)
    assert set(run) == set(data.queries)
    assert all(len(docs) <= 1 for docs in run.values())
    assert next(iter(run["q2"])) in {"d3", "d4"}


def test_progress_reports_indexing_and_retrieval(toy_dir: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    bm25_run(load_beir_dir(toy_dir), top_k=3, progress=lambda *a: seen.append(a))
    assert ("indexing", 6, 6) in seen and ("retrieval", 3, 3) in seen


def test_a_trec_run_file_is_a_first_stage(toy_dir: Path, tmp_path: Path) -> None:
    data = load_beir_dir(toy_dir)
    path = write_trec_run({"q1": {"d1": 3.0, "d2": 2.0, "d5": 1.0}, "q2": {"d3": 1.0}, "other": {"d1": 1.0}},
                          tmp_path / "run.trec", "mine")
    run = first_stage_run(str(path), data, top_k=2)
    assert run == {"q1": {"d1": 3.0, "d2": 2.0}, "q2": {"d3": 1.0}, "q3": {}}


def test_an_unknown_first_stage_is_named(toy_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="bm25"):
        first_stage_run("bm26", load_beir_dir(toy_dir), top_k=2)


def test_dense_first_stage_ranks_by_cosine(toy_dir: Path, tiny_model_dir: Path) -> None:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    data = load_beir_dir(toy_dir)
    run = first_stage_run(f"dense:{tiny_model_dir}", data, top_k=3, device="cpu")
    encoder = SentenceTransformer(str(tiny_model_dir), device="cpu")
    docs = encoder.encode(list(data.corpus.values()), normalize_embeddings=True)
    query = encoder.encode([data.queries["q1"]], normalize_embeddings=True)[0]
    sims = dict(zip(data.corpus, (docs @ query).tolist(), strict=True))
    best = sorted(sims, key=lambda d: -sims[d])[:3]
    assert list(run["q1"]) == best
    assert np.allclose([run["q1"][d] for d in best], [sims[d] for d in best], atol=1e-5)
