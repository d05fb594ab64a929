"""Rerank semantics, in one place below every edge: NaN guard, sigmoid, chunk aggregation, sort and top-k."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from crossrank.core.errors import ScoreError
from crossrank.core.inputs import check_top_k


@dataclass(frozen=True)
class RerankResult:
    """One ranked passage: its input ``index``, sigmoid ``score`` in [0, 1], the model's ``raw_score`` (logit),
    the passage ``text``, and the ``chunk`` (window number) that scored best when long passages are chunked."""

    index: int
    score: float
    raw_score: float
    text: str
    chunk: int = 0


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def check_finite(raw: Sequence[float]) -> None:
    bad = [i for i, v in enumerate(raw) if not math.isfinite(v)]
    if bad:
        raise ScoreError(
            f"the model returned NaN or infinite scores for {len(bad)} pair(s) (first at {bad[0]}); "
            "this usually means fp16 overflow: try dtype='bf16' or 'fp32'"
        )


def aggregate_chunks(pair_of: Sequence[int], chunk_of: Sequence[int], logits: Sequence[float], n_pairs: int
                     ) -> tuple[list[float], list[int]]:
    """Best logit per pair over its chunks, and which chunk gave it (the first such chunk on ties)."""
    best = [-math.inf] * n_pairs
    which = [0] * n_pairs
    seen = [False] * n_pairs
    for pair, chunk, value in zip(pair_of, chunk_of, logits, strict=True):
        if not seen[pair] or value > best[pair]:
            best[pair], which[pair], seen[pair] = value, chunk, True
    if not all(seen):
        raise ValueError("a pair had no scored chunk")
    return best, which


def finalize(raw: Sequence[float], normalize: bool) -> list[float]:
    """Guard against NaN/inf, then apply the sigmoid when asked."""
    check_finite(raw)
    return [sigmoid(v) for v in raw] if normalize else list(raw)


def rank(raw: Sequence[float], texts: Sequence[str], chunks: Sequence[int] | None = None,
         top_k: int | None = None) -> list[RerankResult]:
    """Sort passages best first (stable: ties keep input order) and keep ``top_k``."""
    check_top_k(top_k)
    check_finite(raw)
    order = sorted(range(len(raw)), key=lambda i: -raw[i])
    if top_k is not None:
        order = order[:top_k]
    return [RerankResult(i, sigmoid(raw[i]), float(raw[i]), texts[i], chunks[i] if chunks else 0) for i in order]
