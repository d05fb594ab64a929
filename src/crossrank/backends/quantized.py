"""The CPU's reduced-precision linears: bf16 and int8. The model stays fp32 (embeddings, residual stream, LayerNorms,
attention, classifier); only the encoder's linears run in the lower precision, from forms of their weights prepared
once at load (the packed backend then frees the fp32 originals), because a residual stream with outlier channels
loses the ranking when it is itself kept in bf16 (benchmarks/RESULTS.md).

- ``int8``: weights quantised symmetrically with one scale per output channel, once; activations quantised at every
  call to uint8 with one scale and zero point per call (as PyTorch's dynamic quantisation does), through oneDNN's
  ``qlinear_pointwise``, which uses AMX where the CPU has it and VNNI elsewhere: measured twice as fast as FBGEMM's
  dynamic linears with AMX and as fast without (benchmarks/RESULTS.md). Plain uint8 and int8 tensors only, not
  PyTorch's deprecated quantised tensor types.
- ``bf16``: bf16 copies of the weights; activations cast to bf16 for the product (oneDNN's kernels, with AVX-512 BF16
  or AMX), results back in fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def smoothing(weight: torch.Tensor, input_range: torch.Tensor) -> torch.Tensor:
    """SmoothQuant's per-input-channel factors ``s`` (alpha 0.5) from the weights alone: ``x / s`` and ``W * s`` give
    the same product, with the outlier channels' range moved from the activations (one scale for a whole tensor) into
    the weights (one scale per row). ``input_range``: each input channel's expected range, here the preceding
    LayerNorm's ``|gain| + |bias|``, since the outliers of trained transformers are LayerNorm gains."""
    act = input_range.detach().float().abs().clamp_min(1e-5)
    return (act / weight.detach().float().abs().amax(dim=0).clamp_min(1e-5)).sqrt()


def quantize_weight(weight: torch.Tensor, bias: torch.Tensor | None = None) -> tuple[Any, ...]:
    """``weight`` ``[out, in]`` in oneDNN's packed int8 form (symmetric, one scale per output row), with its scales,
    zero points and ``bias`` (added in the kernel's epilogue)."""
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    ints = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    packed = torch.ops.onednn.qlinear_prepack(ints, None)
    fp_bias = None if bias is None else bias.detach().float().contiguous()
    return packed, scales.contiguous(), torch.zeros_like(scales, dtype=torch.long), fp_bias


def _prepare_int8(weight: torch.Tensor, bias: torch.Tensor | None, input_range: torch.Tensor | None) -> Any:
    """The packed weight and the inverse smoothing factors, if any."""
    if input_range is None:
        return quantize_weight(weight, bias), None
    s = smoothing(weight, input_range)
    return quantize_weight(weight.float() * s, bias), (1.0 / s).contiguous()


def _int8_product(x: torch.Tensor, prepared: tuple[tuple[Any, ...], torch.Tensor | None]) -> torch.Tensor:
    (packed, scales, zero_points, bias), inverse = prepared
    if inverse is not None:
        x = x * inverse
    low, high = (float(v) for v in torch.aminmax(x))
    low, high = min(low, 0.0), max(high, 0.0)  # the range holds 0, which is then exact, as in PyTorch's
    scale = max((high - low) / 255.0, 1e-12)
    zero_point = min(255, max(0, round(-low / scale)))
    xq = x.mul(1.0 / scale).add_(zero_point).round_().clamp_(0, 255).to(torch.uint8)
    return torch.ops.onednn.qlinear_pointwise(xq, scale, zero_point, packed, scales, zero_points, bias, 1.0, 0,
                                              torch.float32, "none", [], "")


def _prepare_bf16(weight: torch.Tensor, bias: torch.Tensor | None, input_range: torch.Tensor | None) -> Any:
    return weight.detach().to(torch.bfloat16).contiguous(), bias


def gelu_up(linear: Callable[..., torch.Tensor], hidden_act: str) -> Callable[..., torch.Tensor] | None:
    """The feed-forward's first linear with its exact GELU applied in place (no second ``[tokens, intermediate]``
    tensor to allocate and fill: measured 2.7x slower than in place at v2-m3's size on the 2-core CPU, page faults
    of a fresh block each time); None for other activations."""
    if hidden_act != "gelu":
        return None
    return lambda x, weight, bias: torch.ops.aten.gelu_(linear(x, weight, bias))


class LowPrecisionLinears:
    """The packed layers' linears in ``dtype`` (``torch.int8`` or ``torch.bfloat16``), fp32 in, fp32 out.
    ``prepare(weight, bias, input_range)`` makes a linear's reduced form once, at load, with its bias; ``input_range``:
    the inputs' per-channel range where known (int8 smooths those linears, :func:`smoothing`), else None.
    ``linears(x, prepared, None)`` runs it."""

    def __init__(self, dtype: torch.dtype) -> None:
        self._prepare: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], Any]
        self._product: Callable[[torch.Tensor, Any], torch.Tensor]
        if dtype == torch.int8:
            if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")):
                raise RuntimeError("dtype='int8' needs a PyTorch built with oneDNN (x86 CPUs)")
            self._prepare, self._product = _prepare_int8, _int8_product
        elif dtype == torch.bfloat16:
            from crossrank.backends.packed.layers import cpu_linear  # the packed package imports this module

            bf16_linear = cpu_linear(torch.device("cpu"), torch.bfloat16)

            def product(x: torch.Tensor, prepared: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
                out = bf16_linear(x.to(torch.bfloat16), prepared[0], None).float()
                return out if prepared[1] is None else out.add_(prepared[1])

            self._prepare, self._product = _prepare_bf16, product
        else:
            raise ValueError(f"no reduced-precision linears in {dtype}: use torch.int8 or torch.bfloat16")
        self.dtype = dtype
        self._prepared = 0

    def __len__(self) -> int:
        """How many linears were prepared."""
        return self._prepared

    def prepare(self, weight: torch.Tensor, bias: torch.Tensor | None, input_range: torch.Tensor | None) -> Any:
        with torch.inference_mode():
            prepared = self._prepare(weight, bias, input_range)
        self._prepared += 1
        return prepared

    def __call__(self, x: torch.Tensor, prepared: Any, bias: None = None) -> torch.Tensor:
        if bias is not None:
            raise ValueError("a reduced-precision linear's bias is prepared with its weight")
        return self._product(x, prepared)
