"""The protocol every backend follows, and the choice between them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from crossrank.core.tokenize import EncodedPair
from crossrank.model.devices import dtype_name, reduced_cpu_precision


@runtime_checkable
class Backend(Protocol):
    """Runs the cross-encoder on one batch of encoded pairs: ``forward(batch)`` returns one float32 logit per pair,
    in batch order, left on the device without waiting for it (the runtime queues the next batch meanwhile and copies
    the logits back once they are ready).

    ``padded`` says how the batch packer should count a batch's cost: padded to its longest sequence, or packed.
    """

    name: str
    device: torch.device
    dtype: torch.dtype
    padded: bool

    def forward(self, batch: Sequence[EncodedPair]) -> torch.Tensor: ...


def create_backend(kind: str, model: Any, *, pad_token_id: int, device: torch.device, dtype: torch.dtype) -> Backend:
    """``padded`` runs any Hugging Face sequence classifier; ``packed`` the XLM-R/BERT family without padding;
    ``auto`` picks packed where it knows the architecture, padded elsewhere."""
    from crossrank.backends.padded import PaddedBackend

    if reduced_cpu_precision(device, dtype):
        return _reduced_precision_backend(kind, model, device=device, dtype=dtype)
    if kind == "padded":
        return PaddedBackend(model, pad_token_id=pad_token_id, device=device, dtype=dtype)
    if kind in ("packed", "auto"):
        try:
            from crossrank.backends.packed import PackedBackend, supports
        except ImportError:
            if kind == "packed":
                raise
        else:
            if supports(model):
                return PackedBackend(model, device=device, dtype=dtype)
            if kind == "packed":
                arch = type(model).__name__
                raise ValueError(f"backend='packed' does not know {arch}; use backend='padded' or 'auto'")
        return PaddedBackend(model, pad_token_id=pad_token_id, device=device, dtype=dtype)
    raise ValueError(f"unknown backend {kind!r}: use auto, packed or padded")



def _reduced_precision_backend(kind: str, model: Any, *, device: torch.device, dtype: torch.dtype) -> Backend:
    """bf16 and int8 on the CPU run on the packed backend only (its linears are the ones in reduced precision)."""
    from crossrank.backends.packed import PackedBackend, supports

    name = dtype_name(dtype)
    if kind not in ("packed", "auto"):
        raise ValueError(f"dtype={name!r} on the CPU runs on the packed backend; use backend='packed' or 'auto', "
                         f"not {kind!r}")
    if not supports(model):
        raise ValueError(f"dtype={name!r} on the CPU runs on the packed backend, which does not know "
                         f"{type(model).__name__}; use dtype='fp32'")
    return PackedBackend(model, device=device, dtype=dtype)
