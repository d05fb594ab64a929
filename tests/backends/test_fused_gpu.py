"""The Triton kernel of crossrank.backends.fused against the unfused PyTorch ops, on CUDA (skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crossrank.backends import fused

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("rows", "hidden"), [(1, 64), (333, 256), (5000, 1024), (17, 384), (3, 1000)])
def test_add_layer_norm_matches_add_then_layer_norm(dtype: torch.dtype, rows: int, hidden: int) -> None:
    g = torch.Generator(device="cuda").manual_seed(rows)
    x = torch.randn(rows, hidden, device="cuda", dtype=dtype, generator=g)
    r = torch.randn(rows, hidden, device="cuda", dtype=dtype, generator=g)
    w = torch.randn(hidden, device="cuda", dtype=dtype, generator=g)
    b = torch.randn(hidden, device="cuda", dtype=dtype, generator=g)
    ref = F.layer_norm(x + r, (hidden,), w, b, 1e-5).float()
    got = fused.add_layer_norm(x, r, w, b, 1e-5)
    assert got.dtype == dtype and got.shape == x.shape
    # Rounding only: within a couple of units in the last place of the half-precision result.
    ulp = 2e-3 if dtype == torch.float16 else 1.6e-2
    assert ((got.float() - ref).abs() <= ulp * (1 + ref.abs())).all()
    # And as close to the fp32 computation as the unfused half-precision ops are, give or take one rounding.
    exact = F.layer_norm(x.float() + r.float(), (hidden,), w.float(), b.float(), 1e-5)
    assert (got.float() - exact).abs().max() <= (ref - exact).abs().max() + ulp * (1 + exact.abs().max())


def test_add_layer_norm_empty_and_non_contiguous() -> None:
    w = torch.ones(64, device="cuda", dtype=torch.float16)
    b = torch.zeros(64, device="cuda", dtype=torch.float16)
    empty = torch.empty(0, 64, device="cuda", dtype=torch.float16)
    assert fused.add_layer_norm(empty, empty, w, b, 1e-5).shape == (0, 64)
    x = torch.randn(64, 8, device="cuda", dtype=torch.float16).t()
    with pytest.raises(ValueError, match="contiguous"):
        fused.add_layer_norm(x, x, w, b, 1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("lengths", [[1], [5, 64, 65, 1], [200, 17, 512, 63, 128, 3], [1000, 9]])
def test_varlen_attention_matches_per_sequence_sdpa(dtype: torch.dtype, lengths: list[int]) -> None:
    from torch.nn.attention.varlen import varlen_attn

    heads, dim = 4, 64
    g = torch.Generator(device="cuda").manual_seed(sum(lengths))
    total = sum(lengths)
    # Strided views, as the packed backend passes them (one fused QKV projection, unbound).
    q, k, v = torch.randn(total, 3, heads, dim, device="cuda", dtype=dtype, generator=g).unbind(1)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device="cuda", dtype=torch.int32)
    got = fused.varlen_attention(q, k, v, cu, max(lengths), dim**-0.5)
    expected = torch.cat([
        F.scaled_dot_product_attention(*(t[s:e].float().transpose(0, 1)[None] for t in (q, k, v)))[0].transpose(0, 1)
        for s, e in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)
    ])
    flash = varlen_attn(q, k, v, cu, cu, max(lengths), max(lengths)).float()
    assert got.shape == q.shape and got.dtype == dtype
    # As close to the fp32 result as FlashAttention-2 in the same dtype is, give or take one rounding.
    ulp = 2e-3 if dtype == torch.float16 else 1.6e-2
    assert (got.float() - expected).abs().max() <= (flash - expected).abs().max() + ulp
