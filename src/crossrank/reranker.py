"""The synchronous library API: :class:`Reranker` with ``rerank``, ``score`` and FlagReranker's ``compute_score``."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, cast

import torch

from crossrank.backends.base import Backend, create_backend
from crossrank.core.errors import DeviceError
from crossrank.core.inputs import check_pairs, check_passages, check_query, check_top_k
from crossrank.core.ranking import RerankResult, aggregate_chunks, finalize, rank
from crossrank.core.settings import DEFAULT_MODEL, BackendName, Dtype, LongPassages, ModelSettings
from crossrank.core.tokenize import EncodedPair, PairEncoder
from crossrank.model.devices import default_batch_tokens, dtype_name, resolve_device, resolve_devices, resolve_dtype
from crossrank.model.loading import ResolvedModel, load_model, load_tokenizer, resolve_model
from crossrank.runtime import processes as worker_processes
from crossrank.runtime.scoring import ProgressCallback, start_batches
from crossrank.runtime.tokenizer_pool import TokenizerPool, default_processes
from crossrank.runtime.workers import WorkerPool, submit_batches

log = logging.getLogger(__name__)

LONG_PASSAGE_MODES = ("truncate", "chunk")
WORKER_KINDS = ("auto", "threads", "processes")
ENCODE_SLICE = 256
"""Most pairs tokenised at a time; the next slices are tokenised while the model scores this one. Tokenising a slice
must take no longer than the GPUs take to score the ones before it, or they idle. With several GPUs the tokenizer
processes start on their first slices together, so a slice is ready after its own tokenisation: two H200s idled
~20-40 ms while one process tokenised a slice of 512 (2 GPUs over 1 on throughput.py's texts: median 1.755x over 7
runs with 512 against 1.855x over 9 with 256 and ``ENCODE_GROWTH`` 1.5 on the same machines, one GPU unchanged;
since then, worker threads: 1.846x over 21 runs on 2 x H200s and 1.787x over 14 on 2 x H100s; worker processes with
``ENCODE_TAPER``: 1.841x over 12 on 2 x H100s, fed by the tokenizer processes 1.854x over 12, and 1.875x over 27 on
H100s and H200s; benchmarks/multi_gpu.py and multi_gpu_timeline.py, RESULTS.md)."""
FIRST_ENCODE_SLICE = 16
"""Pairs in the first slice. Nothing overlaps the first slice's tokenisation, so it is small and the slices grow up
to ``ENCODE_SLICE``: the GPU starts after 16 pairs are tokenised instead of a whole slice (one query with 100
passages: 45 ms with 16 against 52 ms with 64 on an H100, benchmarks/fused_probe.py)."""
ENCODE_GROWTH = 1.5
"""How much each slice grows over the one before it, up to ``ENCODE_SLICE``: slowly enough that each slice is
tokenised (in a child process of its own, with several devices) before the GPUs finish the ones before it."""

ENCODE_TAPER: tuple[int, ...] = (128, 64, 32, 16)
"""Sizes of a call's last slices (only where the call has more pairs than the first slice and these together), so that
worker processes, which each take whole slices, finish together: on one 2 x H100 machine they gave 1.822x and 1.831x
one GPU with it against 1.740x and 1.776x without, one GPU unchanged (benchmarks/multi_gpu.py, RESULTS.md, ninth
session). One device and several slice alike, so their scores stay identical."""


def encode_slices(n: int, first: int | None = None, most: int | None = None,
                  growth: float | None = None, taper: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of the slices that ``n`` pairs are tokenised and scored in: ``first`` pairs, then ``growth``
    times as many each time up to ``most``, and the ``taper`` slices last (defaults: the module's constants). The same
    slices for any number of devices: the same slices make the same batches, and so identical scores on one device
    and several.

    >>> encode_slices(1000, first=64, most=256, growth=2, taper=())
    [(0, 64), (64, 192), (192, 448), (448, 704), (704, 960), (960, 1000)]
    >>> [end - start for start, end in encode_slices(1000)]
    [16, 24, 36, 54, 81, 122, 183, 244, 128, 64, 32, 16]
    >>> [end - start for start, end in encode_slices(1000, taper=())]
    [16, 24, 36, 54, 81, 122, 183, 256, 228]
    """
    size = max(1, first if first is not None else FIRST_ENCODE_SLICE)
    most = max(1, most if most is not None else ENCODE_SLICE)
    growth = ENCODE_GROWTH if growth is None else growth
    tail = [t for t in (ENCODE_TAPER if taper is None else taper) if t > 0]
    if n <= size + sum(tail):
        tail = []
    head = n - sum(tail)
    size = min(size, most)
    bounds, start = [], 0
    while start < head:
        end = min(head, start + size)
        bounds.append((start, end))
        start, size = end, min(most, max(size + 1, math.ceil(size * growth)))
    for t in tail:
        bounds.append((start, start + t))
        start += t
    return bounds


def _checked_mode(long_passages: str) -> str:
    """``long_passages`` if it is one of :data:`LONG_PASSAGE_MODES`, else a ValueError that lists them."""
    if long_passages not in LONG_PASSAGE_MODES:
        raise ValueError(f"long_passages must be one of {LONG_PASSAGE_MODES}, not {long_passages!r}")
    return long_passages


def _dtype_from_fp16(dtype: Dtype, use_fp16: bool | None) -> Dtype:
    """FlagReranker's ``use_fp16``: True is fp16 on a GPU and fp32 on the CPU (``auto``), False is fp32."""
    if use_fp16 is None:
        return dtype
    if dtype != "auto":
        raise ValueError(f"give dtype={dtype!r} or use_fp16={use_fp16!r}, not both")
    return "auto" if use_fp16 else "fp32"


def _slice_progress(progress: ProgressCallback, offset: int, size: int, total: int) -> ProgressCallback:
    """Report a slice's sequences scored as pairs done out of the whole call's pairs."""
    return lambda done, of: progress(offset + done * size // max(of, 1), total)


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
    ``devices``: several devices of this host, one long-lived worker and one model replica each, work going to
    whichever is free: ``"all"``, ``"0,1"``, ``["cuda:0", "cuda:1"]`` (``"cpu,cpu"`` works too, for tests). It
    replaces ``device``; scores are identical to one device.
    ``tokenizer_processes``: child processes that tokenise (:mod:`~tokenizer_pool`); None picks 0 for one
    device and 2-8 (one per 4 cores) for several. 0: a thread of this process tokenises, or with worker processes
    each of them its own slices.
    ``workers``: with several devices, ``"processes"`` (``"auto"``, the default, on POSIX systems): one child process
    per device, each a single-device Reranker scoring whole slices, sharing no interpreter lock
    (:mod:`~processes`; this object keeps only the tokenizer); or ``"threads"`` (``"auto"`` elsewhere): the
    replicas in this process, one worker thread each, which the service's :class:`crossrank.engine.Engine` needs to
    batch across requests.
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
        workers: str = "auto",
        use_fp16: bool | None = None,
    ) -> None:
        dtype = _dtype_from_fp16(dtype, use_fp16)
        _checked_mode(long_passages)
        if workers not in WORKER_KINDS:
            raise ValueError(f"workers must be one of {WORKER_KINDS}, not {workers!r}")
        if max_batch_tokens < 0:
            raise ValueError("max_batch_tokens must be at least 1 (or 0 for the device's default)")
        if chunk_overlap < 0:
            raise ValueError("chunk_overlap must be 0 or more")
        targets = resolve_devices(devices) if devices else [resolve_device(device)]
        if len({d.type for d in targets}) > 1:
            raise DeviceError(f"devices={devices!r} mixes device types; use GPUs only or CPUs only")
        self.device = targets[0]
        self.dtype = resolve_dtype(dtype, self.device)
        max_batch_tokens = max_batch_tokens or default_batch_tokens(self.device)
        # Several devices in worker processes (the default for several, where the system has them): each child loads
        # its own model; this process keeps only the tokenizer (for the cuts and the limits) and hands out slices.
        in_processes = len(targets) > 1 and (
            workers == "processes" or (workers == "auto" and worker_processes.SUPPORTED)
        )
        started = time.perf_counter()
        self.resolved: ResolvedModel = resolve_model(model, models_dir=models_dir)
        self.model: Any = None
        replicas: list[Any] = []
        if in_processes:
            self.tokenizer, config = load_tokenizer(self.resolved.path, model)
        else:
            self.tokenizer, self.model = load_model(self.resolved.path, model, dtype=self.dtype, device=self.device)
            config = self.model.config
            replicas = [load_model(self.resolved.path, model, dtype=self.dtype, device=d)[1] for d in targets[1:]]
        limit = getattr(config, "max_position_embeddings", None)
        if limit is not None and config.model_type in ("xlm-roberta", "roberta", "camembert"):
            limit -= config.pad_token_id + 1  # RoBERTa positions start after the padding index
        self.encoder = PairEncoder(
            self.tokenizer, max_length=max_length, query_max_length=query_max_length, model_max_length=limit
        )
        self.model_max_length: int | None = limit
        self._query_max_length_given = query_max_length  # per-call encoders default as FlagReranker does
        self._call_encoders: dict[int, PairEncoder] = {}
        pad = self.tokenizer.pad_token_id or 0
        self.backend: Backend | None = None
        if self.model is not None:
            self.backend = create_backend(backend, self.model, pad_token_id=pad, device=self.device, dtype=self.dtype)
        # Worker threads: one long-lived worker per device when there are several; a single device runs on the
        # caller's thread.
        self.pool: WorkerPool | None = None
        if self.backend is not None and replicas:
            self.pool = WorkerPool([self.backend] + [
                create_backend(backend, m, pad_token_id=pad, device=d, dtype=self.dtype)
                for m, d in zip(replicas, targets[1:], strict=True)
            ])
        # Several devices: tokenise in child processes, which together keep up with the GPUs where one process does
        # not (tokenizer_pool). Where they cannot start, the worker processes tokenise their own slices,
        # and worker threads tokenise here as for one device.
        self.tokenizer_pool: TokenizerPool | None = None
        processes = default_processes(len(targets)) if tokenizer_processes is None else tokenizer_processes
        if processes > 0:
            try:
                self.tokenizer_pool = TokenizerPool(self.tokenizer, self.encoder, chunk_overlap, processes)
            except Exception as exc:
                log.warning("tokenising in this process: the tokenizer processes did not start (%s)", exc)
        self.settings = ModelSettings(
            model=model, device=str(self.device), dtype=cast(Dtype, dtype_name(self.dtype)), max_length=max_length,
            query_max_length=self.encoder.query_max_length, max_batch_tokens=max_batch_tokens,
            backend=cast(BackendName, self.backend.name if self.backend else backend), long_passages=long_passages,
            chunk_overlap=chunk_overlap, models_dir=models_dir,
            devices=",".join(str(d) for d in targets) if len(targets) > 1 else "",
        )
        self.processes: worker_processes.ProcessWorkers | None = None
        if in_processes:
            try:
                self.processes = worker_processes.ProcessWorkers(self.settings, [str(d) for d in targets])
            except BaseException:
                if self.tokenizer_pool is not None:
                    self.tokenizer_pool.close()
                raise
            self.settings = dataclasses.replace(self.settings, backend=cast(BackendName, self.processes.backend))
        self.load_seconds = time.perf_counter() - started

    @classmethod
    def from_settings(cls, settings: ModelSettings, tokenizer_processes: int | None = None,
                      workers: str = "auto") -> Reranker:
        return cls(
            settings.model, device=settings.device, dtype=settings.dtype, max_length=settings.max_length,
            query_max_length=settings.query_max_length, max_batch_tokens=settings.max_batch_tokens,
            backend=settings.backend, long_passages=settings.long_passages, chunk_overlap=settings.chunk_overlap,
            models_dir=settings.models_dir, devices=settings.devices or None, tokenizer_processes=tokenizer_processes,
            workers=workers,
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
            "devices": self.processes.devices if self.processes else
            [str(b.device) for b in self.pool.backends] if self.pool else [str(self.device)],
            "workers": "processes" if self.processes else "threads",
            "tokenizer_processes": self.tokenizer_pool.size if self.tokenizer_pool else 0,
        }

    def encode(self, pairs: Sequence[tuple[str, str]], long_passages: str | None = None) -> list[EncodedPair]:
        """Tokenise pairs into model sequences (several per pair when long passages are chunked)."""
        mode = _checked_mode(long_passages or self.settings.long_passages)
        return self.encoder.encode_as(pairs, mode, self.settings.chunk_overlap)

    def _raw_scores(self, pairs: Sequence[tuple[str, str]], long_passages: str | None,
                    progress: ProgressCallback | None) -> tuple[list[float], list[int]]:
        """Best logit and winning chunk per pair. Pairs go through in slices: the next slices are tokenised (in a
        thread, or with several devices in the tokenizer processes) while the model scores the current one."""
        if not pairs:
            return [], []
        mode = _checked_mode(long_passages or self.settings.long_passages)
        bounds = encode_slices(len(pairs))
        if mode == "truncate" and (self.processes is not None or self.tokenizer_pool is not None):
            pairs = self.encoder.cut_pairs(pairs)  # texts leave this process: 10 MB passages need not cross the pipes
        if self.processes is not None:
            logits, pair_of, chunk_of = self._logits_in_processes(self.processes, pairs, mode, bounds, progress)
        else:
            logits, pair_of, chunk_of = self._logits_here(pairs, mode, bounds, progress)
        if len(logits) == len(pairs):
            return logits, chunk_of
        return aggregate_chunks(pair_of, chunk_of, logits, len(pairs))

    def _logits_here(self, pairs: Sequence[tuple[str, str]], mode: str, bounds: list[tuple[int, int]],
                     progress: ProgressCallback | None) -> tuple[list[float], list[int], list[int]]:
        """Every sequence's logit, with the pair and passage chunk it belongs to, scored on this process's device(s)."""
        pair_of: list[int] = []
        chunk_of: list[int] = []
        collectors: list[Callable[[], list[float]]] = []
        with contextlib.closing(self._encoded_slices(pairs, bounds, mode)) as slices:  # stops early on errors
            for (offset, end), encoded in zip(bounds, slices, strict=True):
                on_batch = None if progress is None else _slice_progress(progress, offset, end - offset, len(pairs))
                collectors.append(self._start_batches(encoded, on_batch))
                pair_of += [offset + e.pair for e in encoded]
                chunk_of += [e.chunk for e in encoded]
        return [value for collect in collectors for value in collect()], pair_of, chunk_of

    def _logits_in_processes(self, processes: worker_processes.ProcessWorkers, pairs: Sequence[tuple[str, str]],
                             mode: str, bounds: list[tuple[int, int]], progress: ProgressCallback | None
                             ) -> tuple[list[float], list[int], list[int]]:
        """:meth:`_logits_here` with every slice scored in a worker process (the same slices, so the same batches
        and scores), tokenised by the tokenizer processes, or where there are none by the worker process itself."""
        done = 0

        def on_slice(k: int) -> None:
            nonlocal done
            done += bounds[k][1] - bounds[k][0]
            if progress is not None:
                progress(done, len(pairs))

        logits: list[float] = []
        pair_of: list[int] = []
        chunk_of: list[int] = []
        with contextlib.closing(self._slices_to_send(pairs, bounds, mode)) as slices:  # stops early on errors
            answers = processes.score_slices(slices, on_slice)
        for (offset, _), (values, pairs_in_slice, chunks) in zip(bounds, answers, strict=True):
            logits += values
            pair_of += [offset + p for p in pairs_in_slice]
            chunk_of += chunks
        return logits, pair_of, chunk_of

    def _slices_to_send(self, pairs: Sequence[tuple[str, str]], bounds: Sequence[tuple[int, int]],
                        mode: str) -> Generator[worker_processes.Slice, None, None]:
        """Each slice of ``bounds`` for a worker process: tokenised in the tokenizer processes (the next ones while the
        workers score this one), or where there are none as texts the worker tokenises."""
        if self.tokenizer_pool is None:
            for start, end in bounds:
                yield "pairs", list(pairs[start:end]), mode
            return
        with contextlib.closing(self.tokenizer_pool.encode_slices(pairs, bounds, mode)) as encoded:
            for slice_ids in encoded:
                yield "encoded", slice_ids

    def _encoded_slices(self, pairs: Sequence[tuple[str, str]], bounds: Sequence[tuple[int, int]],
                        mode: str) -> Generator[list[EncodedPair], None, None]:
        """Each slice of ``bounds`` tokenised, in order, the next ones while the caller scores this one: in the
        tokenizer processes where there are some (several devices), else in a thread of this process."""
        if self.tokenizer_pool is not None:
            yield from self.tokenizer_pool.encode_slices(pairs, bounds, mode)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossrank-tokenize") as pool:
            pending = pool.submit(self.encode, pairs[bounds[0][0] : bounds[0][1]], mode)
            for k in range(len(bounds)):
                encoded = pending.result()
                if k + 1 < len(bounds):
                    pending = pool.submit(self.encode, pairs[bounds[k + 1][0] : bounds[k + 1][1]], mode)
                yield encoded

    def _start_batches(self, encoded: list[EncodedPair], progress: ProgressCallback | None
                       ) -> Callable[[], list[float]]:
        """Queue this slice's batches (on this thread's device, or on the worker pool) and return at once with a
        function that waits for its logits, so the next slice joins the queue before this one ends and the GPU does
        not idle at slice boundaries (same batches either way, so the same scores)."""
        if self.pool is not None:
            return submit_batches(self.pool, encoded, self.settings.max_batch_tokens, progress)
        assert self.backend is not None, "one device, or worker threads"
        return start_batches(self.backend, encoded, self.settings.max_batch_tokens, progress)

    def score(self, pairs: Sequence[tuple[str, str]], *, normalize: bool = True, long_passages: str | None = None,
              progress: ProgressCallback | None = None, max_length: int | None = None,
              max_batch_tokens: int | None = None) -> list[float]:
        """One score per (query, passage) pair, in input order; sigmoid-normalised to [0, 1] unless told not to.

        ``max_length`` and ``max_batch_tokens`` apply to this call only (one device): pairs are cut at
        ``max_length`` tokens as FlagReranker cuts them, batches hold at most ``max_batch_tokens``.
        """
        checked = check_pairs(pairs)
        raw, _ = self._for_call(max_length, max_batch_tokens)._raw_scores(checked, long_passages, progress)
        return finalize(raw, normalize)

    def compute_score(self, sentence_pairs: Any, *, batch_size: int | None = None, max_length: int | None = None,
                      normalize: bool = False) -> list[float]:
        """FlagReranker-compatible: ``compute_score([q, p])`` or ``compute_score([[q, p], ...])`` → list of floats.

        Raw logits by default, as FlagReranker; ``normalize=True`` applies the sigmoid. ``max_length`` cuts the pairs
        of this call as FlagReranker does; ``batch_size`` caps a batch at that many pairs of ``max_length`` tokens
        (batches are packed by tokens here, never larger than the Reranker's own budget). Any other keyword is a
        TypeError, so a misspelt one does not pass silently.
        """
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        budget = None
        if batch_size is not None:
            budget = min(self.settings.max_batch_tokens, batch_size * (max_length or self.max_length))
        return self.score(sentence_pairs, normalize=normalize, max_length=max_length, max_batch_tokens=budget)

    def rerank(self, query: str, passages: Sequence[str], top_k: int | None = None, *,
               long_passages: str | None = None, progress: ProgressCallback | None = None,
               max_length: int | None = None, max_batch_tokens: int | None = None) -> list[RerankResult]:
        """Rank ``passages`` against ``query``, best first; an empty list of passages gives an empty result.
        ``max_length`` and ``max_batch_tokens`` apply to this call only, as in :meth:`score`."""
        check_query(query)
        texts = check_passages(passages)
        check_top_k(top_k)
        view = self._for_call(max_length, max_batch_tokens)
        raw, chunks = view._raw_scores([(query, p) for p in texts], long_passages, progress)
        return rank(raw, texts, chunks, top_k)

    def predict(self, sentences: Any, *, batch_size: int | None = None, show_progress_bar: bool | None = None,
                convert_to_numpy: bool = True, convert_to_tensor: bool = False) -> Any:
        """sentence-transformers ``CrossEncoder.predict``: sigmoid scores of ``[q, p]`` pairs as a float32 array
        (a tensor with ``convert_to_tensor``, a list with ``convert_to_numpy=False``); one pair gives one score.
        ``show_progress_bar`` is accepted for compatibility; the library never prints."""
        del show_progress_bar
        single = isinstance(sentences, (list, tuple)) and len(sentences) == 2 and isinstance(sentences[0], str)
        pairs = [tuple(sentences)] if single else sentences
        budget = None if batch_size is None else min(self.settings.max_batch_tokens, batch_size * self.max_length)
        scores = self.score(pairs, max_batch_tokens=budget)
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
        budget = None if batch_size is None else min(self.settings.max_batch_tokens, batch_size * self.max_length)
        ranked = []
        for r in self.rerank(query, documents, top_k, max_batch_tokens=budget):
            entry: dict[str, Any] = {"corpus_id": r.index, "score": r.score}
            if doc_ids is not None:
                entry["id"] = doc_ids[r.index]
            if return_documents:
                entry["text"] = r.text
            ranked.append(entry)
        return ranked

    def _for_call(self, max_length: int | None, max_batch_tokens: int | None) -> Reranker:
        """This reranker, or a view of it for one call that cuts pairs at ``max_length`` and batches at most
        ``max_batch_tokens``: the view shares the model and workers, and nothing of this object changes, so
        concurrent calls with other values do not see each other's."""
        if max_length is None and max_batch_tokens is None:
            return self
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be at least 1")
        if self.processes is not None or self.tokenizer_pool is not None:
            raise ValueError("per-call max_length and batch sizes apply on one device; with several, give them to "
                             "Reranker(...)")
        view = copy.copy(self)
        if max_length is not None and max_length != self.max_length:
            view.encoder = self._encoder_for(max_length)
        view.settings = dataclasses.replace(
            self.settings, max_length=view.encoder.max_length, query_max_length=view.encoder.query_max_length,
            max_batch_tokens=max_batch_tokens or self.settings.max_batch_tokens)
        return view

    def _encoder_for(self, max_length: int) -> PairEncoder:
        """A pair encoder for ``max_length`` tokens (kept for the next call with the same length)."""
        encoder = self._call_encoders.get(max_length)
        if encoder is None:
            encoder = PairEncoder(self.tokenizer, max_length=max_length, query_max_length=self._query_max_length_given,
                                  model_max_length=self.model_max_length)
            self._call_encoders[max_length] = encoder
        return encoder

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Reranker({self.model_name!r}, device={str(self.device)!r}, dtype={dtype_name(self.dtype)!r})"

    def close(self) -> None:
        """Stop the workers and free the model's memory (the object is unusable afterwards)."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.tokenizer_pool is not None:
            self.tokenizer_pool.close()
            self.tokenizer_pool = None
        if self.processes is not None:
            self.processes.close()
            self.processes = None
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
