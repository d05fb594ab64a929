"""The spellings users of FlagReranker and sentence-transformers' CrossEncoder bring: per-call max_length and
batch_size, use_fp16, predict, rank, a context manager, and TypeError for unknown keywords."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from FlagEmbedding import FlagReranker

from crossrank import Reranker
from crossrank.testing import generated_sentences

PAIRS = [(q, p) for q in ("what is a cat", "中国的首都") for p in [*generated_sentences(12, seed=9),
                                                             "the model search query passage " * 30]]


def test_compute_score_honours_a_per_call_max_length_like_flagreranker(tiny_model_dir: Path,
                                                                        tiny_reranker: Reranker) -> None:
    reference = FlagReranker(str(tiny_model_dir), use_fp16=False, devices="cpu")
    want = reference.compute_score(PAIRS, max_length=24)
    got = tiny_reranker.compute_score(PAIRS, max_length=24)
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-5
    full = tiny_reranker.compute_score(PAIRS)
    assert max(abs(a - b) for a, b in zip(full, want)) > 1e-3  # the long pairs really were cut shorter
    assert tiny_reranker.compute_score(PAIRS) == full  # nothing of the reranker changed


def test_a_per_call_batch_size_gives_the_same_scores_in_smaller_batches(tiny_reranker: Reranker,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    budgets: list[int | None] = []
    runtime = tiny_reranker.runtime
    real = runtime.submit

    def spy(encoded: Any, max_batch_tokens: int | None = None) -> Any:
        budgets.append(max_batch_tokens)
        return real(encoded, max_batch_tokens)

    monkeypatch.setattr(runtime, "submit", spy)
    want = tiny_reranker.compute_score(PAIRS)
    budgets.clear()
    got = tiny_reranker.compute_score(PAIRS, batch_size=2)
    assert set(budgets) == {2 * tiny_reranker.max_length}
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-5


@pytest.mark.parametrize("keyword", ["normalise", "max_lenght", "device"])
def test_an_unknown_keyword_is_a_type_error(tiny_reranker: Reranker, keyword: str) -> None:
    with pytest.raises(TypeError, match=keyword):
        tiny_reranker.compute_score(PAIRS, **{keyword: 1})


def test_use_fp16_as_flagreranker_spells_it(tiny_model_dir: Path) -> None:
    with Reranker(str(tiny_model_dir), device="cpu", use_fp16=True) as on_cpu:
        assert on_cpu.settings.dtype == "fp32"  # FlagReranker turns fp16 off on the CPU too
    with Reranker(str(tiny_model_dir), device="cpu", use_fp16=False) as plain:
        assert plain.settings.dtype == "fp32"
    with pytest.raises(ValueError, match="not both"):
        Reranker(str(tiny_model_dir), device="cpu", dtype="fp32", use_fp16=True)


def test_predict_as_crossencoder(tiny_reranker: Reranker) -> None:
    scores = tiny_reranker.predict([list(p) for p in PAIRS[:3]])
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, tiny_reranker.score(PAIRS[:3]), atol=1e-6)
    single = tiny_reranker.predict(list(PAIRS[0]))
    assert float(single) == pytest.approx(scores[0], abs=1e-6)
    assert isinstance(tiny_reranker.predict(PAIRS[:2], convert_to_tensor=True), torch.Tensor)
    assert isinstance(tiny_reranker.predict(PAIRS[:2], convert_to_numpy=False), list)


def test_rank_as_crossencoder_with_ids_and_documents(tiny_reranker: Reranker) -> None:
    query, documents = PAIRS[0][0], [p for _, p in PAIRS[:5]]
    ranked = tiny_reranker.rank(query, documents, top_k=3, return_documents=True, doc_ids=list("abcde"))
    expected = tiny_reranker.rerank(query, documents, top_k=3)
    assert [r["corpus_id"] for r in ranked] == [r.index for r in expected]
    assert [r["id"] for r in ranked] == ["abcde"[r.index] for r in expected]
    assert [r["text"] for r in ranked] == [r.text for r in expected]
    assert [r["score"] for r in ranked] == [r.score for r in expected]
    assert set(tiny_reranker.rank(query, documents)[0]) == {"corpus_id", "score"}
    with pytest.raises(ValueError, match="2 ids for 5 documents"):
        tiny_reranker.rank(query, documents, doc_ids=["a", "b"])


def test_the_reranker_is_a_context_manager(tiny_model_dir: Path) -> None:
    with Reranker(str(tiny_model_dir), device="cpu") as reranker:
        assert reranker.score([("q", "p")])
    assert not hasattr(reranker, "model")  # closed on leaving the block
