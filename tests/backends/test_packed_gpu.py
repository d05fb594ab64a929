"""The packed backend on CUDA: fp16/bf16 within 2e-2 of the fp32 padded reference, identical top-10 order.

Marked ``gpu``; skipped only where no CUDA device exists.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from crossrank import Reranker
from crossrank.testing import generated_sentences

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _rerank_inputs(seed: int, n: int = 100) -> tuple[str, list[str]]:
    rng = random.Random(seed)
    sentences = list(generated_sentences(400, seed=seed))
    query = rng.choice(sentences)
    passages = [" ".join(rng.choice(sentences) for _ in range(rng.randint(0, 40))) for _ in range(n)]
    return query, passages


@pytest.fixture(scope="module")
def reference(mid_model_dir: Path) -> Reranker:
    return Reranker(str(mid_model_dir), device="cuda", dtype="fp32", backend="padded")


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_packed_matches_fp32_padded(mid_model_dir: Path, reference: Reranker, dtype: str) -> None:
    packed = Reranker(str(mid_model_dir), device="cuda", dtype=dtype, backend="packed")
    assert packed.backend.name == "packed"
    assert getattr(packed.backend, "attention_kind", None) in ("varlen", "flash_attn")
    for seed in range(3):
        query, passages = _rerank_inputs(seed)
        ref = reference.rerank(query, passages)
        got = packed.rerank(query, passages)
        ref_raw = {r.index: r.raw_score for r in ref}
        worst = max(abs(r.raw_score - ref_raw[r.index]) for r in got)
        assert worst < 2e-2, worst
        # Top-10 identical unless two reference scores are closer than the tolerance (a genuine tie at this precision).
        gaps = [ref[i].raw_score - ref[i + 1].raw_score for i in range(10)]
        if min(gaps) > 4e-2:
            assert [r.index for r in got[:10]] == [r.index for r in ref[:10]]


def test_fp32_packed_on_cuda_matches_padded(mid_model_dir: Path, reference: Reranker) -> None:
    """fp32 on CUDA takes the per-sequence SDPA path: within 1e-4 of the padded reference."""
    packed = Reranker(str(mid_model_dir), device="cuda", dtype="fp32", backend="packed")
    query, passages = _rerank_inputs(7)
    pairs = [(query, p) for p in passages]
    a = packed.score(pairs, normalize=False)
    b = reference.score(pairs, normalize=False)
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4


def test_long_inputs_8192(tmp_path: Path, tokenizer_for_tests) -> None:  # type: ignore[no-untyped-def]
    """max_length 8192 works, and a long sequence packed with short ones scores as it does alone."""
    from crossrank.testing import build_random_reranker

    path = build_random_reranker(tmp_path / "long", layers=2, hidden=64, heads=4, max_positions=8194,
                                 tokenizer=tokenizer_for_tests)
    r = Reranker(str(path), device="cuda", dtype="bf16", backend="packed", max_length=8192, max_batch_tokens=65536)
    ref = Reranker(str(path), device="cuda", dtype="fp32", backend="padded", max_length=8192)
    pairs = [("query", "data " * 9000), ("query", "short passage"), ("query", "music " * 3000)]
    assert max(len(e) for e in r.encode(pairs)) == 8192
    a = r.score(pairs, normalize=False)
    b = ref.score(pairs, normalize=False)
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 2e-2
    alone = [r.score([p], normalize=False)[0] for p in pairs]
    assert max(abs(x - y) for x, y in zip(a, alone, strict=True)) < 2e-2


def test_compiled_post_attention_matches(mid_model_dir: Path, reference: Reranker) -> None:
    from crossrank.backends.packed import PackedBackend

    r = Reranker(str(mid_model_dir), device="cuda", dtype="bf16", backend="packed")
    r.backend = PackedBackend(r.model, device=r.device, dtype=r.dtype, compile=True)
    query, passages = _rerank_inputs(11)
    pairs = [(query, p) for p in passages]
    a = r.score(pairs, normalize=False)
    b = reference.score(pairs, normalize=False)
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 2e-2
