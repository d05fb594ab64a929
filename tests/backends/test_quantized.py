"""The CPU's bf16 and int8 linears: close to fp32's product, prepared once at load, only on the packed backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from crossrank import Reranker
from crossrank.backends import quantized
from crossrank.backends.base import create_backend
from crossrank.backends.packed import PackedBackend
from crossrank.backends.quantized import LowPrecisionLinears, smoothing
from crossrank.model import devices
from crossrank.model.loading import load_model

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _cpu_has_bf16_and_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN runs int8 and bf16 on any x86-64 CPU (slowly without VNNI / AVX-512 BF16), so these tests do
    not depend on the CPU they run on; the flags' policy is tested in tests/model/test_devices.py."""
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(("avx512_bf16", "avx512_vnni")))


def _weights(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(37, 64, generator=gen)
    w = torch.randn(48, 64, generator=gen) * 0.05
    return x, w, torch.randn(48, generator=gen) * 0.05


@pytest.mark.parametrize(("dtype", "tol"), [(torch.int8, 0.03), (torch.bfloat16, 0.01)])
def test_linear_close_to_fp32(dtype: torch.dtype, tol: float) -> None:
    x, w, b = _weights()
    linears = LowPrecisionLinears(dtype)
    prepared = linears.prepare(w, b, None)
    with torch.inference_mode():
        got, want = linears(x, prepared), F.linear(x, w, b)
    assert got.dtype == torch.float32 and got.shape == want.shape
    # int8: 8 bits of the activations' range and each row's weights; bf16: 8 bits of mantissa.
    assert (got - want).abs().max() / want.abs().max() < tol
    assert (got - want).abs().max() > 0  # it did run in the lower precision


def test_int8_with_wrong_scales_is_far_from_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    x, w, b = _weights()
    original = quantized.quantize_weight
    monkeypatch.setattr(quantized, "quantize_weight", lambda weight, bias: original(weight * 2, bias))
    linears = LowPrecisionLinears(torch.int8)
    with torch.inference_mode():
        got, want = linears(x, linears.prepare(w, b, None)), F.linear(x, w, b)
    assert (got - want).abs().max() / want.abs().max() > 0.3


def test_smoothing_keeps_the_product_and_shrinks_outlier_channels() -> None:
    x, w, _ = _weights()
    gain = torch.ones(64)
    gain[[3, 17]] = 20.0
    x = x * gain
    s = smoothing(w, gain)
    torch.testing.assert_close((x / s) @ (w * s).t(), x @ w.t(), rtol=1e-4, atol=1e-4)
    assert (x / s).abs().amax(0)[[3, 17]].max() < x.abs().amax(0)[[3, 17]].min()


def test_int8_smoothed_linear_beats_plain_on_outlier_inputs() -> None:
    x, w, b = _weights(1)
    gain = torch.ones(64)
    gain[[5, 40]] = 30.0
    x = x * gain
    linears = LowPrecisionLinears(torch.int8)
    with torch.inference_mode():
        want = F.linear(x, w, b)
        plain = linears(x, linears.prepare(w, b, None))
        smoothed = linears(x, linears.prepare(w, b, gain))
    assert (smoothed - want).abs().max() < (plain - want).abs().max()


def test_a_second_bias_and_unknown_dtype_refused() -> None:
    x, w, b = _weights()
    linears = LowPrecisionLinears(torch.int8)
    prepared = linears.prepare(w, b, None)
    assert len(linears) == 1
    with pytest.raises(ValueError, match="bias is prepared with its weight"):
        linears(x, prepared, b)  # the bias is packed with the weight: another one would be silently ignored
    with pytest.raises(ValueError, match=r"use torch\.int8 or torch\.bfloat16"):
        LowPrecisionLinears(torch.float16)


@pytest.mark.parametrize("dtype", [torch.int8, torch.bfloat16])
def test_packed_backend_prepares_every_encoder_linear(tiny_model_dir: Path, dtype: torch.dtype) -> None:
    _, model = load_model(tiny_model_dir, "tiny", dtype=dtype, device=CPU)
    assert next(model.parameters()).dtype == torch.float32  # the model stays fp32; its linears get copies
    full = sum(p.numel() for p in model.parameters())
    linear_weights = sum(p.numel() for name, p in model.named_parameters()
                         if (name.startswith("roberta.encoder.") and name.endswith("dense.weight"))
                         or name.endswith(("query.weight", "key.weight", "value.weight")))
    backend = create_backend("auto", model, pad_token_id=1, device=CPU, dtype=dtype)
    assert isinstance(backend, PackedBackend)
    assert isinstance(backend.linear, LowPrecisionLinears)
    assert len(backend.linear) == 4 * model.config.num_hidden_layers
    # The fp32 copies of the prepared weights are freed: embeddings, LayerNorms, biases and the head remain.
    assert sum(p.numel() for p in model.parameters()) == full - linear_weights


@pytest.mark.parametrize("dtype", [torch.int8, torch.bfloat16])
def test_reduced_precision_refused_on_the_padded_backend(tiny_model_dir: Path, dtype: torch.dtype) -> None:
    _, model = load_model(tiny_model_dir, "tiny", dtype=dtype, device=CPU)
    with pytest.raises(ValueError, match="runs on the packed backend; use backend='packed' or 'auto'"):
        create_backend("padded", model, pad_token_id=1, device=CPU, dtype=dtype)


def test_reduced_precision_refused_with_compile(tiny_model_dir: Path) -> None:
    _, model = load_model(tiny_model_dir, "tiny", dtype=torch.int8, device=CPU)
    with pytest.raises(ValueError, match="compile=True does not run the CPU's int8 linears"):
        PackedBackend(model, device=CPU, dtype=torch.int8, compile=True)


def test_reduced_precision_refused_for_an_architecture_packed_does_not_know(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="does not know Linear; use dtype='fp32'"):
        create_backend("auto", torch.nn.Linear(2, 1), pad_token_id=1, device=CPU, dtype=torch.int8)


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_reranker_scores_near_fp32_and_fp32_is_unchanged(tiny_model_dir: Path, tiny_reranker: Reranker,
                                                         dtype: str) -> None:
    pairs = [("cat", "dog"), ("数据分析", "读取文件跳过前两行"), ("query", ""), ("a b c", "a b c d e f")]
    reference = tiny_reranker.score(pairs, normalize=False)
    with Reranker(str(tiny_model_dir), device="cpu", dtype=dtype) as r:
        assert r.describe()["dtype"] == dtype
        got = r.score(pairs, normalize=False)
    assert got != reference
    spread = max(reference) - min(reference)
    # A smoke check (the quality bounds are tests/eval/test_quality.py's): on this 2-layer, hidden-32 model with
    # weights of spread 0.3, int8 moved logits by up to 0.24 of the spread, bf16 by less.
    assert max(abs(a - b) for a, b in zip(got, reference, strict=True)) < 0.35 * spread
    assert tiny_reranker.score(pairs, normalize=False) == reference


def test_gelu_up_is_the_exact_gelu_in_place() -> None:
    x, w, b = _weights()
    up = quantized.gelu_up(F.linear, "gelu")
    assert up is not None
    assert torch.equal(up(x, w, b), F.gelu(F.linear(x, w, b)))
    assert quantized.gelu_up(F.linear, "relu") is None
