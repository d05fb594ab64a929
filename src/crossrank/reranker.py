"""The synchronous library API: :class:`Reranker` with ``rerank``, ``score`` and FlagReranker's ``compute_score``.

A call goes check → slices → tokenise → runtime → rank: the pairs are cut into slices
(:func:`crossrank.core.batching.encode_slices`), each slice is tokenised while the device scores the ones before it
(:mod:`crossrank.runtime.tokenizers`), submitted to the runtime (:mod:`crossrank.runtime`), and the logits are ranked
by :mod:`crossrank.core.ranking`, the one place for rerank semantics.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from types import TracebackType
from typing import Any, cast

import torch

from crossrank.core.batching import encode_slices
from crossrank.core.errors import DeviceError
from crossrank.core.inputs import check_pairs, check_passages, check_query, check_top_k
from crossrank.core.ranking import RerankResult, aggregate_chunks, finalize, rank
from crossrank.core.settings import (
    DEFAULT_MODEL,
    LONG_PASSAGES,
    BackendName,
    Dtype,
    LongPassages,
    ModelSettings,
    ProgressCallback,
)
from crossrank.core.tokenize import EncodedPair, PairEncoder
from crossrank.model.devices import default_batch_tokens, dtype_name, resolve_device, resolve_devices, resolve_dtype
from crossrank.model.loading import ResolvedModel, resolve_model
from crossrank.runtime.start import start_runtime
from crossrank.runtime.tokenizers import SubmitSlice, TokenizerProcesses, default_processes, encoded_slices

log = logging.getLogger(__name__)

THREAD_AHEAD = 2
"""Slices tokenised ahead of the device by this process's tokenizer thread."""


def _checked_mode(long_passages: str) -> str:
    """``long_passages`` if it is one of :data:`~crossrank.core.settings.LONG_PASSAGES`, else a ValueError."""
    if long_passages not in LONG_PASSAGES:
        raise ValueError(f"long_passages must be one of {LONG_PASSAGES}, not {long_passages!r}")
    return long_passages


def _dtype_from_fp16(dtype: Dtype, use_fp16: bool | None) -> Dtype:
    """FlagReranker's ``use_fp16``: True is fp16 on a GPU and fp32 on the CPU (``auto``), False is fp32."""
    if use_fp16 is None:
        return dtype
    if dtype != "auto":
        raise ValueError(f"give dtype={dtype!r} or use_fp16={use_fp16!r}, not both")
    return "auto" if use_fp16 else "fp32"


def _model_limit(config: Any) -> int | None:
    """The longest sequence the model's positions allow (RoBERTa's start after the padding index)."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and config.model_type in ("xlm-roberta", "roberta", "camembert"):
        limit -= config.pad_token_id + 1
    return limit


class Reranker:
    """Score (query, passage) pairs with a cross-encoder, exactly as FlagEmbedding's ``FlagReranker`` does.

    >>> r = Reranker("BAAI/bge-reranker-v2-m3")                 # doctest: +SKIP
    >>> r.rerank("capital of France?", ["Paris is the capital.", "Lyon has food."], top_k=1)  # doctest: +SKIP
    [RerankResult(index=0, score=0.99..., raw_score=5.1..., text='Paris is the capital.', chunk=0)]

    ``device``: auto | cpu | cuda | cuda:N | mps. ``dtype``: auto (fp16 on GPU, fp32 on CPU) | fp32 | fp16 | bf16.
    ``long_passages``: ``truncate`` (the reference's behaviour) or ``chunk`` (score windows of the passage that fit
    beside the query, ``chunk_overlap`` tokens apart, and keep the best).
    ``max_batch_tokens``: tokens in one batch (longest pairs first, no padding on the packed backend); 0 picks the
    device's default (32,768 on GPU, 2,048 on CPU).
    ``devices``: several devices of this host, one worker process and model replica each (POSIX systems):
    ``"all"``, ``"0,1"``, ``["cuda:0", "cuda:1"]`` (``"cpu,cpu"`` works too, for tests). It replaces ``device``;
    scores are identical to one device.
    ``tokenizer_processes``: child processes that tokenise ahead of the devices; None picks none for one device and
    2-8 (one per 4 cores) for several; 0 tokenises in a thread of this process.
    ``use_fp16``: FlagReranker's spelling; True is ``dtype="auto"`` (fp16 on a GPU), False is fp32.

    A context manager: ``with Reranker(...) as r:`` closes it at the end.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "auto",
        dtype: Dtype = "auto",
        max_length: int = 512,
        query_max_length: int | None = None,
        max_batch_tokens: int = 0,
        backend: BackendName = "auto",
        long_passages: LongPassages = "truncate",
        chunk_overlap: int = 32,
        models_dir: str = "models",
        devices: str | Sequence[str | torch.device] | None = None,
        tokenizer_processes: int | None = None,
        use_fp16: bool | None = None,
    ) -> None:
        dtype = _dtype_from_fp16(dtype, use_fp16)
        _checked_mode(long_passages)
        if max_batch_tokens < 0:
            raise ValueError("max_batch_tokens must be at least 1 (or 0 for the device's default)")
        if chunk_overlap < 0:
            raise ValueError("chunk_overlap must be 0 or more")
        targets = resolve_devices(devices) if devices else [resolve_device(device)]
        if len({d.type for d in targets}) > 1:
            raise DeviceError(f"devices={devices!r} mixes device types; use GPUs only or CPUs only")
        self.device = targets[0]
        self.dtype = resolve_dtype(dtype, self.device)
        started = time.perf_counter()
        self.resolved: ResolvedModel = resolve_model(model, models_dir=models_dir)
        self.settings = ModelSettings(
            model=model, device=str(self.device), dtype=cast(Dtype, dtype_name(self.dtype)), max_length=max_length,
            query_max_length=query_max_length, max_batch_tokens=max_batch_tokens or default_batch_tokens(self.device),
            backend=backend, long_passages=long_passages, chunk_overlap=chunk_overlap, models_dir=models_dir,
            devices=",".join(str(d) for d in targets) if len(targets) > 1 else "",
        )
        self.tokenizer, config, self.runtime = start_runtime(self.resolved.path, self.settings, targets)
        try:
            self.model_max_length = _model_limit(config)
            self.encoder = PairEncoder(self.tokenizer, max_length=max_length, query_max_length=query_max_length,
                                       model_max_length=self.model_max_length)
            self._query_max_length_given = query_max_length  # per-call encoders default as FlagReranker does
            self._call_encoders: dict[int, PairEncoder] = {max_length: self.encoder}
            self._tokenizer_processes = self._start_tokenizer_processes(len(targets), tokenizer_processes)
        except BaseException:
            self.runtime.close()
            raise
        self.settings = dataclasses.replace(self.settings, query_max_length=self.encoder.query_max_length,
                                            backend=cast(BackendName, self.runtime.backend_name))
        self.load_seconds = time.perf_counter() - started

    def _start_tokenizer_processes(self, devices: int, processes: int | None) -> TokenizerProcesses | None:
        """Tokenizer processes where they are wanted and start; else None, and a thread of this process tokenises."""
        processes = default_processes(devices) if processes is None else processes
        self._tokenizer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossrank-tokenize")
        if processes > 0:
            try:
                return TokenizerProcesses(self.tokenizer, self.encoder, self.settings.chunk_overlap, processes)
            except Exception as exc:
                log.warning("tokenising in this process: the tokenizer processes did not start (%s)", exc)
        return None

    @classmethod
    def from_settings(cls, settings: ModelSettings, tokenizer_processes: int | None = None) -> Reranker:
        """A reranker as ``settings`` describe it."""
        return cls(
            settings.model, device=settings.device, dtype=settings.dtype, max_length=settings.max_length,
            query_max_length=settings.query_max_length, max_batch_tokens=settings.max_batch_tokens,
            backend=settings.backend, long_passages=settings.long_passages, chunk_overlap=settings.chunk_overlap,
            models_dir=settings.models_dir, devices=settings.devices or None, tokenizer_processes=tokenizer_processes,
        )

    @property
    def model_name(self) -> str:
        return self.settings.model

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    def describe(self) -> dict[str, Any]:
        """Model, device, dtype and limits, for reports and the service's /info."""
        return {
            "model": self.model_name, "path": str(self.resolved.path), "source": self.resolved.source,
            "device": str(self.device), "dtype": dtype_name(self.dtype), "backend": self.settings.backend,
            "max_length": self.max_length, "query_max_length": self.encoder.query_max_length,
            "max_batch_tokens": self.settings.max_batch_tokens, "long_passages": self.settings.long_passages,
            "devices": self.runtime.devices,
            "tokenizer_processes": self._tokenizer_processes.size if self._tokenizer_processes else 0,
        }

    def encode(self, pairs: Sequence[tuple[str, str]], long_passages: str | None = None) -> list[EncodedPair]:
        """Tokenise pairs into model sequences (several per pair when long passages are chunked)."""
        mode = _checked_mode(long_passages or self.settings.long_passages)
        return self.encoder.encode_as(pairs, mode, self.settings.chunk_overlap)

    def _encoder_for(self, max_length: int | None) -> PairEncoder:
        """The pair encoder for ``max_length`` tokens (this reranker's by default; kept for the next call)."""
        if max_length is None:
            return self.encoder
        encoder = self._call_encoders.get(max_length)
        if encoder is None:
            encoder = PairEncoder(self.tokenizer, max_length=max_length, query_max_length=self._query_max_length_given,
                                  model_max_length=self.model_max_length)
            self._call_encoders[max_length] = encoder
        return encoder

    def encode_later(self, pairs: Sequence[tuple[str, str]], long_passages: str | None = None
                     ) -> Future[list[EncodedPair]]:
        """:meth:`encode` of ``pairs`` in the tokenizer processes when this reranker has them, else in its tokenizer
        thread: a future of the sequences, numbered from 0 in ``pairs``. For callers that tokenise while the device
        scores, such as the service's engine."""
        mode = _checked_mode(long_passages or self.settings.long_passages)
        submit, _ = self._slice_submitter(self.encoder)
        return submit(pairs, mode)

    def _slice_submitter(self, encoder: PairEncoder) -> tuple[SubmitSlice, int]:
        """Where slices tokenised by ``encoder`` go, and how many may be tokenised ahead: the tokenizer processes
        (which encode as this reranker's encoder does, so only for it), else this process's tokenizer thread."""
        processes = self._tokenizer_processes
        if processes is not None and encoder is self.encoder:
            def to_process(part: Sequence[tuple[str, str]], mode: str) -> Future[list[EncodedPair]]:
                if mode == "truncate":
                    part = encoder.cut_pairs(part)  # texts leave this process: 10 MB passages need not cross
                return processes.submit(part, mode)

            return to_process, processes.ahead
        overlap = self.settings.chunk_overlap

        def to_thread(part: Sequence[tuple[str, str]], mode: str) -> Future[list[EncodedPair]]:
            return self._tokenizer_thread.submit(encoder.encode_as, part, mode, overlap)

        return to_thread, THREAD_AHEAD

    def _encoded_slices(self, pairs: Sequence[tuple[str, str]], bounds: Sequence[tuple[int, int]], mode: str,
                        encoder: PairEncoder) -> Generator[list[EncodedPair], None, None]:
        """Each slice of ``bounds`` tokenised, in order, the next ones while the caller scores this one."""
        submit, ahead = self._slice_submitter(encoder)
        return encoded_slices(submit, pairs, bounds, mode, ahead)

    def _raw_scores(self, pairs: Sequence[tuple[str, str]], long_passages: str | None,
                    progress: ProgressCallback | None, max_length: int | None = None,
                    max_batch_tokens: int | None = None) -> tuple[list[float], list[int]]:
        """Best logit and winning chunk per pair, each slice scored while the next ones are tokenised."""
        mode = _checked_mode(long_passages or self.settings.long_passages)
        encoder = self._encoder_for(max_length)
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be at least 1")
        if not pairs:
            return [], []
        bounds = encode_slices(len(pairs))
        scored: list[tuple[int, Future[list[float]]]] = []  # each slice's pairs and its logits to come
        pair_of: list[int] = []
        chunk_of: list[int] = []
        reported = 0
        with closing(self._encoded_slices(pairs, bounds, mode, encoder)) as slices:  # stops early on errors
            for (offset, end), encoded in zip(bounds, slices, strict=True):
                scored.append((end - offset, self.runtime.submit(encoded, max_batch_tokens)))
                pair_of += [offset + e.pair for e in encoded]
                chunk_of += [e.chunk for e in encoded]
                reported = self._report(scored, reported, progress, len(pairs), wait=False)
        self._report(scored, reported, progress, len(pairs), wait=True)
        logits = [value for _, future in scored for value in future.result()]
        if len(logits) == len(pairs):
            return logits, chunk_of
        return aggregate_chunks(pair_of, chunk_of, logits, len(pairs))

    @staticmethod
    def _report(scored: list[tuple[int, Future[list[float]]]], reported: int, progress: ProgressCallback | None,
                total: int, wait: bool) -> int:
        """Call ``progress(pairs done, total)`` for the slices scored since the last report (on the caller's
        thread); returns how many slices are reported now. ``wait``: wait for every slice."""
        done = sum(size for size, _ in scored[:reported])
        while reported < len(scored) and (wait or scored[reported][1].done()):
            scored[reported][1].exception()  # waits; a failure is raised where the logits are read
            done += scored[reported][0]
            reported += 1
            if progress is not None:
                progress(done, total)
        return reported

    def score(self, pairs: Sequence[tuple[str, str]], *, normalize: bool = True, long_passages: str | None = None,
              progress: ProgressCallback | None = None, max_length: int | None = None,
              max_batch_tokens: int | None = None) -> list[float]:
        """One score per (query, passage) pair, in input order; sigmoid-normalised to [0, 1] unless told not to.

        ``max_length`` and ``max_batch_tokens`` apply to this call only: pairs are cut at ``max_length`` tokens as
        FlagReranker cuts them, batches hold at most ``max_batch_tokens``.
        """
        checked = check_pairs(pairs)
        raw, _ = self._raw_scores(checked, long_passages, progress, max_length, max_batch_tokens)
        return finalize(raw, normalize)

    def compute_score(self, sentence_pairs: Any, *, batch_size: int | None = None, max_length: int | None = None,
                      normalize: bool = False) -> list[float]:
        """FlagReranker-compatible: ``compute_score([q, p])`` or ``compute_score([[q, p], ...])`` → list of floats.

        Raw logits by default, as FlagReranker; ``normalize=True`` applies the sigmoid. ``max_length`` cuts the pairs
        of this call as FlagReranker does; ``batch_size`` caps a batch at that many pairs of ``max_length`` tokens
        (batches are packed by tokens here, never larger than the Reranker's own budget). Any other keyword is a
        TypeError, so a misspelt one does not pass silently.
        """
        return self.score(sentence_pairs, normalize=normalize, max_length=max_length,
                          max_batch_tokens=self._budget_for(batch_size, max_length))

    def _budget_for(self, batch_size: int | None, max_length: int | None = None) -> int | None:
        """The token budget of a batch of ``batch_size`` pairs of ``max_length`` tokens, within this reranker's."""
        if batch_size is None:
            return None
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        return min(self.settings.max_batch_tokens, batch_size * (max_length or self.max_length))

    def rerank(self, query: str, passages: Sequence[str], top_k: int | None = None, *,
               long_passages: str | None = None, progress: ProgressCallback | None = None,
               max_length: int | None = None, max_batch_tokens: int | None = None) -> list[RerankResult]:
        """Rank ``passages`` against ``query``, best first; an empty list of passages gives an empty result.
        ``max_length`` and ``max_batch_tokens`` apply to this call only, as in :meth:`score`."""
        check_query(query)
        texts = check_passages(passages)
        check_top_k(top_k)
        raw, chunks = self._raw_scores([(query, p) for p in texts], long_passages, progress, max_length,
                                       max_batch_tokens)
        return rank(raw, texts, chunks, top_k)

    def predict(self, sentences: Any, *, batch_size: int | None = None, show_progress_bar: bool | None = None,
                convert_to_numpy: bool = True, convert_to_tensor: bool = False) -> Any:
        """sentence-transformers ``CrossEncoder.predict``: sigmoid scores of ``[q, p]`` pairs as a float32 array
        (a tensor with ``convert_to_tensor``, a list with ``convert_to_numpy=False``); one pair gives one score.
        ``show_progress_bar`` is accepted for compatibility; the library never prints."""
        del show_progress_bar
        single = isinstance(sentences, list | tuple) and len(sentences) == 2 and isinstance(sentences[0], str)
        pairs = [tuple(sentences)] if single else sentences
        scores = self.score(pairs, max_batch_tokens=self._budget_for(batch_size))
        if convert_to_tensor:
            values: Any = torch.tensor(scores, dtype=torch.float32)
        elif convert_to_numpy:
            import numpy as np

            values = np.asarray(scores, dtype=np.float32)
        else:
            values = scores
        return values[0] if single else values

    def rank(self, query: str, documents: Sequence[str], top_k: int | None = None, *,
             return_documents: bool = False, doc_ids: Sequence[Any] | None = None,
             batch_size: int | None = None, show_progress_bar: bool | None = None) -> list[dict[str, Any]]:
        """sentence-transformers ``CrossEncoder.rank``: ``[{"corpus_id": i, "score": s}, ...]`` best first, with
        ``"text"`` when ``return_documents``, and ``"id"`` (the caller's id of each document) when ``doc_ids``."""
        del show_progress_bar
        if doc_ids is not None and len(doc_ids) != len(documents):
            raise ValueError(f"doc_ids has {len(doc_ids)} ids for {len(documents)} documents")
        ranked = []
        for r in self.rerank(query, documents, top_k, max_batch_tokens=self._budget_for(batch_size)):
            entry: dict[str, Any] = {"corpus_id": r.index, "score": r.score}
            if doc_ids is not None:
                entry["id"] = doc_ids[r.index]
            if return_documents:
                entry["text"] = r.text
            ranked.append(entry)
        return ranked

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Reranker({self.model_name!r}, device={str(self.device)!r}, dtype={dtype_name(self.dtype)!r})"

    def close(self) -> None:
        """Stop the runtime and the tokenizers, and free the model's memory (idempotent; the object is unusable
        afterwards)."""
        if not hasattr(self, "runtime"):
            return
        if self._tokenizer_processes is not None:
            self._tokenizer_processes.close()
        self._tokenizer_thread.shutdown(wait=True)
        self.runtime.close()
        del self.runtime
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

