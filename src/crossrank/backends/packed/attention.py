"""Attention within each packed sequence where crossrank's Triton kernel does not run: PyTorch's FlashAttention varlen
op, flash-attn's, or scaled-dot-product attention per sequence (exact, on any device)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


def _sdpa_per_sequence(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, cu_host: torch.Tensor, max_len: int,
    first_only: bool,
) -> torch.Tensor:
    """Exact fallback: one SDPA call per sequence, ``[tokens, heads, dim]`` in and out (one row per sequence if
    ``first_only``). ``cu_host`` holds the same offsets as ``cu`` on the CPU, to slice without device syncs.

    The inputs are given to SDPA as 4-D ``[1, heads, tokens, dim]``: with 3-D inputs PyTorch picks the unfused "math"
    kernel (explicit scores, masks, softmax as separate passes), with 4-D ones the fused flash-attention kernel for CPU,
    measured ~7x faster per call on the 2-core CPU and equal to 1e-6."""
    bounds = cu_host.tolist()
    outs = []
    for start, end in itertools.pairwise(bounds):
        qs = q[start : start + 1] if first_only else q[start:end]
        out = F.scaled_dot_product_attention(
            qs.transpose(0, 1).unsqueeze(0), k[start:end].transpose(0, 1).unsqueeze(0),
            v[start:end].transpose(0, 1).unsqueeze(0),
        )
        outs.append(out[0].transpose(0, 1))
    return torch.cat(outs)


def _varlen_attention() -> Callable[..., Any] | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def _flash_attention_capable(device: torch.device) -> bool:
    """FlashAttention-2 kernels (``varlen_attn``, flash-attn) need an Ampere or newer GPU; older ones (T4, V100) get the
    exact per-sequence SDPA path instead of an error at the first batch."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def _flash_attention() -> Callable[..., Any] | None:
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func  # type: ignore[no-any-return,unused-ignore]
