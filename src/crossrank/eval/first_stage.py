"""First-stage retrieval: the candidates a reranker reorders.

Three sources: BM25 (``bm25s``, with a PyStemmer stemmer and stopwords where the language has them), a TREC run file
the user brings, or a sentence-transformers bi-encoder (``dense:MODEL``). Each gives a :data:`Run`:
``{query_id: {doc_id: score}}`` with at most ``top_k`` documents per query.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from crossrank.eval.datasets import Dataset
from crossrank.eval.trec import Run, read_trec_run

StageProgress = Callable[[str, int, int], None]
"""Called as ``progress(phase, done, total)``; phase is ``indexing`` or ``retrieval``."""

BM25S_STOPWORDS = frozenset({
    "english", "german", "dutch", "french", "spanish", "portuguese", "italian", "russian", "swedish", "norwegian",
    "chinese", "turkish", "korean", "danish",
})
"""Languages whose stopword lists ship with bm25s."""

INDEX_CHUNK = 2000   # documents tokenised per progress step
QUERY_CHUNK = 256    # queries retrieved per progress step


def _tick(progress: StageProgress | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(phase, done, total)


def _require(module: str, package: str, install: str = "'crossrank[eval]'") -> Any:
    import importlib

    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{package} is needed for this first stage: pip install {install}") from exc
    if module == "bm25s":
        # bm25s sets its own logger to DEBUG on import, which prints a line per index build.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
    return loaded


class BM25Tokenizer:
    """bm25s's regex tokenizer with stopwords and a Snowball stemmer for ``language`` where they exist."""

    def __init__(self, language: str = "english") -> None:
        stemmer_module = _require("Stemmer", "PyStemmer")
        self.language = language.lower()
        self.stopwords: str | None = self.language if self.language in BM25S_STOPWORDS else None
        self.stemmer = stemmer_module.Stemmer(self.language) if self.language in stemmer_module.algorithms() else None

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        bm25s = _require("bm25s", "bm25s")
        tokens: list[list[str]] = bm25s.tokenize(
            list(texts), stopwords=self.stopwords, stemmer=self.stemmer, return_ids=False, show_progress=False
        )
        return tokens


class BM25Index:
    """A BM25 index over a corpus (bm25s's Lucene variant, k1=1.5, b=0.75 by default)."""

    def __init__(self, doc_ids: Sequence[str], texts: Sequence[str], *, language: str = "english",
                 k1: float = 1.5, b: float = 0.75, progress: StageProgress | None = None) -> None:
        bm25s = _require("bm25s", "bm25s")
        self.doc_ids = list(doc_ids)
        self.tokenize = BM25Tokenizer(language)
        tokens: list[list[str]] = []
        for start in range(0, len(texts), INDEX_CHUNK):
            tokens.extend(self.tokenize(texts[start:start + INDEX_CHUNK]))
            _tick(progress, "indexing", len(tokens), len(texts))
        self.retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.retriever.index(tokens, show_progress=False)

    def search(self, queries: dict[str, str], top_k: int, progress: StageProgress | None = None) -> Run:
        """Top ``top_k`` documents per query; documents sharing no term with the query (score 0) are left out."""
        k = min(top_k, len(self.doc_ids))
        run: Run = {}
        ids = list(queries)
        for start in range(0, len(ids), QUERY_CHUNK):
            chunk = ids[start:start + QUERY_CHUNK]
            docs, scores = self.retriever.retrieve(
                self.tokenize([queries[q] for q in chunk]), k=k, show_progress=False, n_threads=1
            )
            for qid, row_docs, row_scores in zip(chunk, docs.tolist(), scores.tolist(), strict=True):
                run[qid] = {self.doc_ids[d]: float(s) for d, s in zip(row_docs, row_scores, strict=True) if s > 0}
            _tick(progress, "retrieval", start + len(chunk), len(ids))
        return run


def bm25_run(dataset: Dataset, top_k: int, *, language: str = "english",
             progress: StageProgress | None = None) -> Run:
    """Index the dataset's corpus with BM25 and retrieve ``top_k`` documents for each of its queries."""
    index = BM25Index(list(dataset.corpus), list(dataset.corpus.values()), language=language, progress=progress)
    return index.search(dataset.queries, top_k, progress)


def dense_run(dataset: Dataset, model: str, top_k: int, *, device: str | None = None, batch_size: int = 64,
              progress: StageProgress | None = None) -> Run:
    """Embed corpus and queries with a sentence-transformers bi-encoder; cosine similarity, ``top_k`` per query."""
    import numpy as np

    st = _require("sentence_transformers", "sentence-transformers", "sentence-transformers")
    encoder = st.SentenceTransformer(model, device=device)
    doc_ids, texts = list(dataset.corpus), list(dataset.corpus.values())
    parts = []
    for start in range(0, len(texts), INDEX_CHUNK):
        parts.append(encoder.encode(texts[start:start + INDEX_CHUNK], batch_size=batch_size,
                                    normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False))
        _tick(progress, "indexing", min(start + INDEX_CHUNK, len(texts)), len(texts))
    docs = np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)
    query_ids = list(dataset.queries)
    k = min(top_k, len(doc_ids))
    run: Run = {}
    for start in range(0, len(query_ids), QUERY_CHUNK):
        chunk = query_ids[start:start + QUERY_CHUNK]
        q = encoder.encode([dataset.queries[i] for i in chunk], batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
        sims = q @ docs.T
        best = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        for row, qid in enumerate(chunk):
            run[qid] = {doc_ids[j]: float(sims[row, j]) for j in best[row]}
        _tick(progress, "retrieval", start + len(chunk), len(query_ids))
    return run


def first_stage_run(spec: str, dataset: Dataset, top_k: int, *, language: str = "english", device: str | None = None,
                    progress: StageProgress | None = None) -> Run:
    """``bm25``, ``dense:MODEL`` or the path of a TREC run file → the first-stage run, restricted to judged queries."""
    if spec == "bm25":
        return bm25_run(dataset, top_k, language=language, progress=progress)
    if spec.startswith("dense:"):
        return dense_run(dataset, spec.removeprefix("dense:"), top_k, device=device, progress=progress)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--first-stage must be 'bm25', 'dense:MODEL' or a TREC run file; {path} is none")
    run = read_trec_run(path, top_k)
    return {qid: run.get(qid, {}) for qid in dataset.queries}
