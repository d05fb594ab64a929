"""Rerank a first-stage run with a crossrank model, many queries' pairs per call, through the score cache.

Scores are the model's raw logits from :meth:`crossrank.Reranker.score` (``normalize=False``): the sigmoid is
monotonic, so rankings are the same, and logits keep ties apart that fp32 sigmoids near 1 would merge.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from crossrank.eval.cache import ScoreCache, text_hash
from crossrank.eval.datasets import Dataset
from crossrank.eval.trec import Run

PairProgress = Callable[[int, int], None]
"""Called as ``progress(pairs_done, pairs_to_score)``."""

CHUNK_PAIRS = 2048
"""Pairs per scoring call: big enough to fill batches across queries, small enough that a crash loses little."""


class PairScorer(Protocol):
    """What reranking needs of a :class:`crossrank.Reranker`."""

    def score(self, pairs: Any, *, normalize: bool = ..., long_passages: str | None = ...,
              progress: Any = ...) -> list[float]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RerankStats:
    """How many pairs a rerank covered, how many came from the cache, and the seconds spent scoring the rest."""

    pairs: int
    scored: int
    cached: int
    seconds: float

    @property
    def ms_per_1000_pairs(self) -> float | None:
        return 1000 * 1000 * self.seconds / self.scored if self.scored else None


def cache_key(reranker: PairScorer) -> str:
    """Everything that changes a score: the model and how text is cut and computed."""
    info = reranker.describe()
    return json.dumps({k: info.get(k) for k in ("model", "dtype", "max_length", "query_max_length", "long_passages")},
                      sort_keys=True)


def rerank_run(reranker: PairScorer, dataset: Dataset, first_stage: Run, *, cache: ScoreCache | None = None,
               chunk_pairs: int = CHUNK_PAIRS, progress: PairProgress | None = None) -> tuple[Run, RerankStats]:
    """Score every (query, candidate) pair of ``first_stage`` and return the run of model scores.

    Pairs of many queries go to the model together (its token-budget packer batches them); each chunk's scores are
    committed to ``cache`` before the next chunk starts.
    """
    model = cache_key(reranker)
    keys = [(qid, did, text_hash(dataset.queries[qid], dataset.corpus[did]))
            for qid, docs in first_stage.items() if qid in dataset.queries for did in docs]
    scores = cache.lookup(model, keys) if cache is not None else {}
    todo = [k for k in keys if (k[0], k[1]) not in scores]
    if progress is not None:
        progress(0, len(todo))
    seconds = 0.0
    for start in range(0, len(todo), chunk_pairs):
        chunk = todo[start:start + chunk_pairs]
        pairs = [(dataset.queries[q], dataset.corpus[d]) for q, d, _ in chunk]
        began = time.perf_counter()
        values = reranker.score(pairs, normalize=False, progress=_offset(progress, start, len(todo), len(chunk)))
        seconds += time.perf_counter() - began
        if cache is not None:
            cache.store(model, [(q, d, h, v) for (q, d, h), v in zip(chunk, values, strict=True)])
        scores.update({(q, d): v for (q, d, _), v in zip(chunk, values, strict=True)})
        if progress is not None:
            progress(start + len(chunk), len(todo))
    run: Run = {}
    for qid, did, _ in keys:
        run.setdefault(qid, {})[did] = scores[(qid, did)]
    return run, RerankStats(len(keys), len(todo), len(keys) - len(todo), seconds)


def _offset(progress: PairProgress | None, start: int, total: int, size: int) -> Callable[[int, int], None] | None:
    """Map the model's per-call progress (sequences of this chunk) onto pairs of the whole rerank."""
    if progress is None:
        return None

    def report(done: int, of: int) -> None:
        progress(start + min(size, round(size * done / of)) if of else start, total)

    return report
