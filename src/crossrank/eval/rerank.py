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
"""Called as ``progress(tokens_done, tokens_to_score)``: work is counted in (estimated) tokens, not pairs, because the
model scores the longest pairs of each call first, so pairs done would run ahead of the time spent."""

CHARS_PER_TOKEN = 4
"""For estimating tokens without tokenising: about four characters per subword token in English text."""


class PairScorer(Protocol):
    """What reranking needs of a :class:`crossrank.Reranker`."""

    def score(self, pairs: Any, *, normalize: bool = ..., long_passages: str | None = ...,
              progress: Any = ...) -> list[float]: ...

    def describe(self) -> dict[str, Any]: ...


class RerankInterrupted(KeyboardInterrupt):
    """Ctrl-C while reranking: the pairs scored so far are committed to the cache (``kept`` of ``todo``)."""

    def __init__(self, kept: int, todo: int) -> None:
        super().__init__(f"{kept:,} of {todo:,} pairs scored and kept")
        self.kept, self.todo = kept, todo


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
    return json.dumps({k: info.get(k) for k in ("model", "dtype", "max_length", "query_max_length", "long_passages",
                                                "backend")}, sort_keys=True)


def estimate_tokens(query: str, passage: str, max_length: int) -> int:
    """The tokens a pair will take, roughly, without tokenising (capped at ``max_length`` as truncation does)."""
    return min(max_length, 4 + (len(query) + len(passage)) // CHARS_PER_TOKEN)


def token_chunks(tokens: list[int], budget: int) -> list[tuple[int, int]]:
    """``(start, end)`` runs of pairs of about ``budget`` tokens each (one model batch), at least one pair each."""
    chunks, start, held = [], 0, 0
    for i, t in enumerate(tokens):
        if held and held + t > budget:
            chunks.append((start, i))
            start, held = i, 0
        held += t
    if start < len(tokens):
        chunks.append((start, len(tokens)))
    return chunks


def rerank_run(reranker: PairScorer, dataset: Dataset, first_stage: Run, *, cache: ScoreCache | None = None,
               progress: PairProgress | None = None) -> tuple[Run, RerankStats]:
    """Score every (query, candidate) pair of ``first_stage`` and return the run of model scores.

    Pairs go to the model a batch's worth of tokens at a time, and each call's scores are committed to ``cache``
    before the next starts: Ctrl-C loses at most the batch in flight (:class:`RerankInterrupted` says what was kept).
    """
    model = cache_key(reranker)
    info = reranker.describe()
    keys = [(qid, did, text_hash(dataset.queries[qid], dataset.corpus[did]))
            for qid, docs in first_stage.items() if qid in dataset.queries for did in docs]
    scores = cache.lookup(model, keys) if cache is not None else {}
    todo = [k for k in keys if (k[0], k[1]) not in scores]
    tokens = [estimate_tokens(dataset.queries[q], dataset.corpus[d], int(info.get("max_length") or 512))
              for q, d, _ in todo]
    done_tokens, total_tokens = 0, sum(tokens)
    if progress is not None:
        progress(0, total_tokens)
    seconds = 0.0
    kept = 0
    for start, end in token_chunks(tokens, int(info.get("max_batch_tokens") or 2048)):
        chunk = todo[start:end]
        pairs = [(dataset.queries[q], dataset.corpus[d]) for q, d, _ in chunk]
        began = time.perf_counter()
        try:
            values = reranker.score(pairs, normalize=False)
        except KeyboardInterrupt as exc:
            raise RerankInterrupted(kept, len(todo)) from exc
        seconds += time.perf_counter() - began
        if cache is not None:
            cache.store(model, [(q, d, h, v) for (q, d, h), v in zip(chunk, values, strict=True)])
        kept += len(chunk)
        scores.update({(q, d): v for (q, d, _), v in zip(chunk, values, strict=True)})
        done_tokens += sum(tokens[start:end])
        if progress is not None:
            progress(done_tokens, total_tokens)
    run: Run = {}
    for qid, did, _ in keys:
        run.setdefault(qid, {})[did] = scores[(qid, did)]
    return run, RerankStats(len(keys), len(todo), len(keys) - len(todo), seconds)
