"""Encoded pairs in, logits out: packing under the token budget and out-of-memory back-off.

Shared by the synchronous :class:`crossrank.Reranker` and the asynchronous engine, so both batch the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from crossrank.backends.base import Backend
from crossrank.batching import pack_batches, restore_order
from crossrank.devices import is_out_of_memory
from crossrank.errors import OutOfMemoryError
from crossrank.tokenize import EncodedPair

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` with numbers of sequences scored so far."""


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def forward_with_backoff(backend: Backend, batch: Sequence[EncodedPair]) -> list[float]:
    """Run one batch; on accelerator out-of-memory (and only that) split it in halves and retry, down to one pair."""
    try:
        return [float(v) for v in backend.forward(batch).tolist()]
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        _free_cache(backend.device)
        if len(batch) == 1:
            raise OutOfMemoryError(
                f"one pair of {len(batch[0])} tokens does not fit in {backend.device} memory even alone; "
                "lower max_length, use dtype='fp16'/'bf16', or free GPU memory used by other processes"
            ) from exc
        mid = len(batch) // 2
        log.warning("out of memory on a batch of %d sequences; splitting it and retrying", len(batch))
        return forward_with_backoff(backend, batch[:mid]) + forward_with_backoff(backend, batch[mid:])


def run_batches(
    backend: Backend,
    encoded: Sequence[EncodedPair],
    max_batch_tokens: int,
    progress: ProgressCallback | None = None,
) -> list[float]:
    """Score every encoded sequence, longest first under the budget; logits come back in input order."""
    batches = pack_batches([len(e) for e in encoded], max_batch_tokens, padded=backend.padded)
    values: list[list[float]] = []
    done = 0
    for batch in batches:
        values.append(forward_with_backoff(backend, [encoded[i] for i in batch]))
        done += len(batch)
        if progress is not None:
            progress(done, len(encoded))
    return restore_order(batches, values, len(encoded))
