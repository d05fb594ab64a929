"""How far a reduced precision (bf16, int8) moves a reranker's scores from fp32's, on the same model and inputs.

Differences in logits mean little on their own (a model's logits may spread over 0.1 or over 20), so they are given
relative to each query's spread: ``|logit - fp32 logit| / (max - min of the query's fp32 logits)``. What a user sees is
the ranking, so each query's Spearman correlation with fp32's order and the overlap of the two top-10s are given too.
Used by ``benchmarks/quality.py`` and by the tests that hold the CPU's bf16 and int8 to bounds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.core.settings import Dtype

QueryPassages = tuple[str, list[str]]


@dataclass(frozen=True)
class ScoreAgreement:
    """One candidate's logits against the reference's, over several queries."""

    queries: int
    pairs: int
    max_rel_delta: float
    """The largest ``|Δlogit|`` relative to its query's spread of reference logits."""
    p99_rel_delta: float
    spearman_min: float
    spearman_median: float
    top_k: int
    top_k_overlap_min: float
    """The smallest share of the reference's top ``top_k`` that the candidate's top ``top_k`` holds, over queries."""
    top_k_overlap_mean: float

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, rounded for a report."""
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def violations(self, bounds: dict[str, float]) -> list[str]:
        """The ``bounds`` (field name → bound) this agreement breaks: upper bounds for the differences
        (``*_delta``), lower bounds for the rest."""
        out = []
        for name, bound in bounds.items():
            value = getattr(self, name)
            if (value > bound) if name.endswith("_delta") else (value < bound):
                out.append(f"{name} {value:.4f} (bound {bound})")
        return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    try:
        from scipy.stats import spearmanr
    except ImportError as exc:
        raise ImportError("the Spearman correlation needs scipy: pip install 'crossrank[eval]'") from exc
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.array_equal(np.argsort(a), np.argsort(b)) else 0.0
    return float(spearmanr(a, b).statistic)


def score_agreement(reference: Sequence[Sequence[float]], candidate: Sequence[Sequence[float]],
                    top_k: int = 10) -> ScoreAgreement:
    """Compare ``candidate``'s logits with ``reference``'s, one list per query (same queries, same passages, same
    order). A query whose reference logits are all equal is refused: it has no spread to measure against."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError(f"need the same queries on both sides, got {len(reference)} and {len(candidate)}")
    rel: list[np.ndarray] = []
    spearman: list[float] = []
    overlap: list[float] = []
    for i, (ref_q, cand_q) in enumerate(zip(reference, candidate, strict=True)):
        ref, cand = np.asarray(ref_q, dtype=np.float64), np.asarray(cand_q, dtype=np.float64)
        if ref.shape != cand.shape or ref.size < 2:
            raise ValueError(f"query {i}: need the same two or more passages on both sides")
        spread = float(np.ptp(ref))
        if spread == 0:
            raise ValueError(f"query {i}: every reference logit is equal; there is no spread to compare against")
        rel.append(np.abs(cand - ref) / spread)
        spearman.append(_spearman(ref, cand))
        k = min(top_k, ref.size)
        overlap.append(len(set(np.argsort(-ref)[:k]) & set(np.argsort(-cand)[:k])) / k)
    every = np.concatenate(rel)
    return ScoreAgreement(
        queries=len(reference), pairs=int(every.size), max_rel_delta=float(every.max()),
        p99_rel_delta=float(np.quantile(every, 0.99)), spearman_min=min(spearman),
        spearman_median=float(np.median(spearman)), top_k=top_k, top_k_overlap_min=min(overlap),
        top_k_overlap_mean=float(np.mean(overlap)),
    )


def generated_queries(queries: int, passages: int, seed: int = 0, sentences_per_passage: int = 4
                      ) -> list[QueryPassages]:
    """Queries with ``passages`` passages each, from :func:`crossrank.testing.generated_sentences` (English, Chinese,
    emoji), for models built by :func:`crossrank.testing.build_random_reranker`."""
    from crossrank.testing import generated_sentences

    rng = random.Random(seed)
    pool = list(generated_sentences(600, seed=seed))
    return [(rng.choice(pool), [" ".join(rng.choice(pool) for _ in range(sentences_per_passage))
                                for _ in range(passages)]) for _ in range(queries)]


def logits_by_query(reranker: Any, queries: Sequence[QueryPassages]) -> list[list[float]]:
    """``reranker``'s logits for every query's passages, in one call, split back by query."""
    pairs = [(q, p) for q, passages in queries for p in passages]
    flat = reranker.score(pairs, normalize=False)
    out, start = [], 0
    for _, passages in queries:
        out.append(list(flat[start : start + len(passages)]))
        start += len(passages)
    return out


def compare_dtypes(model: str | Path, queries: Sequence[QueryPassages], dtypes: Sequence[Dtype],
                   device: str = "cpu", **options: Any) -> dict[str, ScoreAgreement]:
    """Load ``model`` in fp32 and in each of ``dtypes`` on ``device`` (``options``: other :class:`Reranker` keywords)
    and compare each one's logits with fp32's on ``queries``."""
    from crossrank import Reranker

    with Reranker(str(model), device=device, dtype="fp32", **options) as r:
        reference = logits_by_query(r, queries)
    result: dict[str, ScoreAgreement] = {}
    for dtype in dtypes:
        with Reranker(str(model), device=device, dtype=dtype, **options) as r:
            result[dtype] = score_agreement(reference, logits_by_query(r, queries))
    return result
