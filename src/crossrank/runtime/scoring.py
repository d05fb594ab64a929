"""Encoded pairs in, logits out: packing under the token budget and out-of-memory back-off.

Shared by the synchronous :class:`crossrank.Reranker` and the asynchronous engine, so both batch the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from crossrank.backends.base import Backend
from crossrank.core.batching import pack_batches, restore_order
from crossrank.core.errors import OutOfMemoryError
from crossrank.core.tokenize import EncodedPair
from crossrank.model.devices import is_out_of_memory

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` with numbers of sequences scored so far."""


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _split_on_oom(run: Callable[[Sequence[EncodedPair]], torch.Tensor], batch: Sequence[EncodedPair],
                  device: torch.device) -> list[torch.Tensor]:
    """``run(batch)``; on accelerator out-of-memory (and only that) split the batch in halves and retry, down to one
    pair. Returns the logit tensors of the parts, in batch order."""
    try:
        return [run(batch)]
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        _free_cache(device)
        if len(batch) == 1:
            raise OutOfMemoryError(
                f"one pair of {len(batch[0])} tokens does not fit in {device} memory even alone; "
                "lower max_length, use dtype='fp16'/'bf16', or free GPU memory used by other processes"
            ) from exc
        mid = len(batch) // 2
        log.warning("out of memory on a batch of %d sequences; splitting it and retrying", len(batch))
        return _split_on_oom(run, batch[:mid], device) + _split_on_oom(run, batch[mid:], device)


def forward_with_backoff(backend: Backend, batch: Sequence[EncodedPair]) -> list[float]:
    """Run one batch; on accelerator out-of-memory (and only that) split it in halves and retry, down to one pair."""
    parts = _split_on_oom(backend.forward, batch, backend.device)
    return [float(v) for part in parts for v in part.tolist()]


def launch_batch(backend: Backend, batch: Sequence[EncodedPair]) -> list[torch.Tensor]:
    """Queue one batch and return its logit tensors without waiting for them (``forward_device`` where the backend has
    it, else ``forward``), split in halves on accelerator out-of-memory."""
    run: Callable[[Sequence[EncodedPair]], torch.Tensor] = getattr(backend, "forward_device", backend.forward)
    return _split_on_oom(run, batch, backend.device)


def start_batches(
    backend: Backend,
    encoded: Sequence[EncodedPair],
    max_batch_tokens: int,
    progress: ProgressCallback | None = None,
) -> Callable[[], list[float]]:
    """Queue every batch of ``encoded`` (longest first under the budget) and return a function that waits for the
    logits, in input order.

    A backend with ``forward_device`` (logits left on the device, no wait) gets all batches queued back to back and
    one copy of all logits when the returned function is called: the host prepares batch k+1 while the GPU runs batch
    k, and a caller can queue its next slice of pairs before this one finishes, so the GPU does not idle in between.
    Progress then counts batches queued, not finished.
    """
    batches = pack_batches([len(e) for e in encoded], max_batch_tokens, padded=backend.padded)
    parts: list[torch.Tensor] = []
    sizes: list[int] = []
    done = 0
    for batch in batches:
        parts += launch_batch(backend, [encoded[i] for i in batch])
        sizes.append(len(batch))
        done += len(batch)
        if progress is not None:
            progress(done, len(encoded))

    def collect() -> list[float]:
        flat = torch.cat(parts).float().cpu().tolist() if parts else []
        values, at = [], 0
        for size in sizes:
            values.append(flat[at : at + size])
            at += size
        return restore_order(batches, values, len(encoded))

    return collect


def run_batches(
    backend: Backend,
    encoded: Sequence[EncodedPair],
    max_batch_tokens: int,
    progress: ProgressCallback | None = None,
) -> list[float]:
    """Score every encoded sequence, longest first under the budget; logits come back in input order."""
    return start_batches(backend, encoded, max_batch_tokens, progress)()
