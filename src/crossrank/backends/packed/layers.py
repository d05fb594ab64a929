"""Everything of a layer after attention, as plain functions over tensors: output projection, residual + LayerNorm,
feed-forward; and the linears they use (oneDNN's on the CPU, a GEMM with its activation in the epilogue on CUDA)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from crossrank.backends.packed.architectures import _GELU_ACTS
from crossrank.model.devices import cpu_vendor

log = logging.getLogger("crossrank.backends.packed")

_T = torch.Tensor
_W = Any
"""A linear's weight: a tensor, or the form a reduced precision prepared from it (its bias is then None)."""
_PostWeights = tuple[_W, _T | None, _T, _T, float, _W, _T | None, _W, _T | None, _T, _T, float]
"""``_post_attention``'s weights after ``ctx`` and ``x``, in its order."""


def _add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """``layer_norm(x + residual)`` with PyTorch's ops (two passes); :func:`crossrank.backends.fused.add_layer_norm`
    is the one-pass kernel for CUDA."""
    return F.layer_norm(x + residual, (x.shape[-1],), weight, bias, eps)


def _post_attention(
    ctx: torch.Tensor, x: torch.Tensor, o_w: _W, o_b: torch.Tensor | None, ln1_w: torch.Tensor, ln1_b: torch.Tensor,
    ln1_eps: float, i_w: _W, i_b: torch.Tensor | None, f_w: _W, f_b: torch.Tensor | None, ln2_w: torch.Tensor,
    ln2_b: torch.Tensor, ln2_eps: float, act: Callable[[torch.Tensor], torch.Tensor],
    linear: Callable[..., torch.Tensor] = F.linear, add_norm: Callable[..., torch.Tensor] = _add_layer_norm,
    up: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """Output projection, residual + LayerNorm, feed-forward, residual + LayerNorm (post-LN, as BERT and XLM-R).
    ``up(h, weight, bias)``, where given, is the feed-forward's first linear with its activation in one
    (:func:`gemm_epilogue`); else ``act(linear(...))``. Under ``torch.compile`` the residual adds, LayerNorms and
    bias + GELU become fused Triton kernels."""
    h = add_norm(linear(ctx, o_w, o_b), x, ln1_w, ln1_b, ln1_eps)
    inner = up(h, i_w, i_b) if up is not None else act(linear(h, i_w, i_b))
    return add_norm(linear(inner, f_w, f_b), h, ln2_w, ln2_b, ln2_eps)


def gemm_epilogue(hidden_act: str, device: torch.device, dtype: torch.dtype) -> Callable[..., torch.Tensor] | None:
    """The feed-forward's first linear with bias + activation in cuBLASLt's GEMM epilogue
    (``torch._addmm_activation``), for CUDA in fp16/bf16; None where it does not apply or fails a probe.

    The epilogue's GELU is the tanh approximation, not the erf GELU of ``hidden_act="gelu"``. In half precision that
    costs no accuracy that matters: the separate pass rounds the GEMM's output to fp16/bf16 before the GELU and again
    after it, the epilogue rounds once, and the two GELUs differ by about that rounding. Measured on an H100: 1.3-1.4x
    faster than GEMM + GELU pass, model only 48.2% -> 52.8% of peak in fp16, logits as close to the fp32 reference as
    with the exact pass (0.0021 on 1,000 pairs of v2-m3's shape, either way)."""
    if (device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16) or hidden_act not in _GELU_ACTS
            or not hasattr(torch, "_addmm_activation")):
        return None
    use_gelu = hidden_act != "relu"

    def up(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch._addmm_activation(bias, x, weight.t(), use_gelu=use_gelu)

    # A private op: check it against PyTorch's own activation here, and fall back if it fails or disagrees.
    gen = torch.Generator(device=device).manual_seed(0)
    x, w = (torch.randn(shape, device=device, dtype=dtype, generator=gen) / 8 for shape in ((64, 64), (256, 64)))
    b = torch.randn(256, device=device, dtype=dtype, generator=gen)
    try:
        got = up(x, w, b).float()
    except RuntimeError as exc:
        log.info("no GEMM epilogue for the activation here (%s); using a separate pass", exc)
        return None
    linear = F.linear(x.float(), w.float(), b.float())
    want = F.gelu(linear, approximate="tanh") if use_gelu else F.relu(linear)
    if not torch.allclose(got, want, atol=3e-2, rtol=1e-2):
        log.info("the GEMM epilogue disagrees with PyTorch's activation on a probe; using a separate pass")
        return None
    return up


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` through oneDNN's matmul (the op ``torch.compile`` uses for CPU linears) instead of MKL's sgemm,
    with the same result to ~1e-6."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def cpu_linear(device: torch.device, dtype: torch.dtype) -> Callable[..., torch.Tensor]:
    """The linear used by the packed layers on the CPU, the faster one measured there (benchmarks/RESULTS.md): in fp32,
    MKL's sgemm (``F.linear``) on Intel CPUs and oneDNN's matmul on others (AMD); in bf16, oneDNN's. oneDNN's is taken
    only where this torch has it and it agrees with ``F.linear`` on a probe (it is a private op, so a torch that
    changed it falls back instead of failing)."""
    if device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16) or not torch.backends.mkldnn.is_available():
        return F.linear
    if dtype == torch.float32 and cpu_vendor() == "GenuineIntel":
        return F.linear
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(shape, generator=gen).to(dtype) for shape in ((5, 16), (8, 16), (8,)))
        atol = 1e-5 if dtype == torch.float32 else 5e-2  # bf16 keeps 8 bits: results of ~4 differ by its rounding
        with torch.inference_mode():
            if torch.allclose(_onednn_linear(x, w, b).float(), F.linear(x, w, b).float(), atol=atol):
                return _onednn_linear
    except (RuntimeError, AttributeError, TypeError):
        pass
    return F.linear
