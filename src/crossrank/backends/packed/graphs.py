"""The shapes and buffers of a batch replayed as a CUDA graph of the whole forward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

GRAPH_TOKEN_STEP = 1024
"""A batch replayed as a CUDA graph is padded to a multiple of this many tokens (at most 1,023 rows of padding, which
every layer computes and nothing reads)."""
GRAPH_MAX_TOKENS = 8192
"""Largest batch replayed as a CUDA graph. A graph saves the host ~7 ms of kernel launches per batch, which is what a
small batch costs (one query's first slices); a large one keeps the GPU busy for longer than its launches take, and
ran ~2.5% slower as a graph on two H200s (benchmarks/RESULTS.md), so it runs op by op."""
GRAPH_MOST = 64
"""Most CUDA graphs one backend captures (one per padded shape); batches of any further shape run op by op."""


def graph_bucket(tokens: int, sequences: int, block_m: int) -> tuple[int, int, int]:
    """The padded shape ``(tokens, sequences, attention work items)`` of a batch replayed as a CUDA graph: tokens
    rounded up to a multiple of :data:`GRAPH_TOKEN_STEP`, sequences up to a power of two (at least 16), and the most
    work items ``tokens`` and ``sequences`` can need (:func:`crossrank.backends.fused.attention_items`).

    >>> graph_bucket(30_000, 150, 64)
    (30720, 256, 736)
    """
    padded_tokens = -(-max(tokens, 1) // GRAPH_TOKEN_STEP) * GRAPH_TOKEN_STEP
    padded_sequences = max(16, 1 << (max(sequences, 1) - 1).bit_length())
    return padded_tokens, padded_sequences, padded_tokens // block_m + padded_sequences


@dataclass(frozen=True)
class _Inputs:
    """A batch's index tensors in one pinned host buffer: ids, positions and token types (``tokens`` each), the
    ``sequences + 1`` offsets, then ``items`` attention work items. Padded (for a CUDA graph) where ``tokens`` and
    ``sequences`` exceed the batch's own: padding rows are token 0 at the first position, padding sequences empty."""

    host: torch.Tensor
    tokens: int
    sequences: int
    items: int
    cu_host: torch.Tensor  # the batch's own offsets (no padding sequences), on the host
    max_len: int


@dataclass(frozen=True)
class _Graph:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: torch.Tensor  # the device buffer the graph reads; each replay copies a batch's inputs into it first
    logits: torch.Tensor  # the device tensor the graph writes
