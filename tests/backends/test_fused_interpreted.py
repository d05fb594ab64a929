"""The Triton kernels of crossrank.backends.fused run by Triton's CPU interpreter (``TRITON_INTERPRET=1``), so that
CI, which has no GPU, checks what they compute. tests/backends/test_fused_gpu.py checks the compiled kernels on CUDA.

The kernels run in one child process (interpreter_run.py says why); the tests here build the inputs, and check the
outputs against the unfused PyTorch ops in float32.

The interpreter runs each program with NumPy, which has no bfloat16: the attention kernel's ``tl.dot`` in bfloat16
gives garbage there (not on a GPU), so attention is checked in float16 only. `.ci/run` installs Triton 3.9; it is not
in the test extra because a CUDA build of torch pins a Triton of its own (conftest.py's ``interpreter_problem`` says
where the tests cannot run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crossrank.backends.fused import ATTENTION_CONFIG, attention_items

pytestmark = pytest.mark.slow  # Triton's interpreter runs the kernels

LAYER_NORM_SHAPES = [(1, 64), (17, 384), (3, 1000)]
HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}
ATTENTION_LENGTHS = [[1], [5, 64, 65, 1], [130, 17, 3, 200]]
ATTENTION_DIMS = [32, 64]
HEADS = 2
PADDED_LENGTHS = np.array([70, 0, 9, 128])
SMALL_TILES = {**ATTENTION_CONFIG, "BLOCK_M": 32, "BLOCK_N": 32}


def _layer_norm_inputs(rows: int, hidden: int, dtype: torch.dtype) -> tuple[Any, ...]:
    g = torch.Generator().manual_seed(rows)
    x, r = (torch.randn(rows, hidden, generator=g).to(dtype) for _ in range(2))
    w, b = (torch.randn(hidden, generator=g).to(dtype) for _ in range(2))
    return x, r, w, b, 1e-5


def _qkv_cu(lengths: list[int] | np.ndarray, dim: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    # Strided views, as the packed backend passes them (one fused QKV projection, unbound).
    q, k, v = torch.randn(int(np.sum(lengths)), 3, HEADS, dim, generator=g).to(torch.float16).unbind(1)
    cu = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int32)
    return q, k, v, cu


def _cases() -> dict[str, tuple[str, tuple[Any, ...]]]:
    cases: dict[str, tuple[str, tuple[Any, ...]]] = {}
    for name, dtype in HALF.items():
        for rows, hidden in LAYER_NORM_SHAPES:
            cases[f"ln-{name}-{rows}-{hidden}"] = ("add_layer_norm", _layer_norm_inputs(rows, hidden, dtype))
    for i, lengths in enumerate(ATTENTION_LENGTHS):
        for dim in ATTENTION_DIMS:
            q, k, v, cu = _qkv_cu(lengths, dim, seed=i * 100 + dim)
            cases[f"attn-{i}-{dim}"] = ("varlen_attention", (q, k, v, cu, max(lengths), dim**-0.5))
    q, k, v, cu = _qkv_cu(PADDED_LENGTHS, 16, seed=7)
    tight = torch.from_numpy(attention_items(PADDED_LENGTHS, 32))
    padded = torch.from_numpy(attention_items(PADDED_LENGTHS, 32, size=len(tight) + 5))
    for name, items in (("tight", tight), ("padded", padded)):
        cases[f"items-{name}"] = ("varlen_attention_items", (q, k, v, cu, items, 16**-0.5, SMALL_TILES))
    return cases


@pytest.fixture(scope="module")
def run(run_interpreted: Callable[[str, Any], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cases' inputs, and what the interpreted kernels returned for them."""
    cases = _cases()
    return cases, run_interpreted("kernels", cases)


@pytest.mark.parametrize("dtype", list(HALF))
@pytest.mark.parametrize(("rows", "hidden"), LAYER_NORM_SHAPES)
def test_add_layer_norm_matches_add_then_layer_norm(run: tuple[dict[str, Any], dict[str, Any]], dtype: str,
                                                    rows: int, hidden: int) -> None:
    cases, outputs = run
    name = f"ln-{dtype}-{rows}-{hidden}"
    x, r, w, b, eps = cases[name][1]
    got = outputs[name]
    assert got.dtype == HALF[dtype] and got.shape == x.shape
    # The kernel rounds the sum to the input dtype, as the unfused add does, then normalises in float32.
    expected = F.layer_norm((x + r).float(), (hidden,), w.float(), b.float(), eps)
    ulp = 2e-3 if dtype == "float16" else 1.6e-2
    assert ((got.float() - expected).abs() <= ulp * (1 + expected.abs())).all()


def _per_sequence_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor) -> torch.Tensor:
    bounds = zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)
    return torch.cat([
        F.scaled_dot_product_attention(*(t[s:e].float().transpose(0, 1)[None] for t in (q, k, v)))[0].transpose(0, 1)
        for s, e in bounds
    ])


# float16 inputs, float32 accumulation: the output's own rounding and that of the probabilities fed to P @ V.
ATTENTION_TOLERANCE = 4e-3


@pytest.mark.parametrize("case", range(len(ATTENTION_LENGTHS)))
@pytest.mark.parametrize("dim", ATTENTION_DIMS)
def test_varlen_attention_matches_per_sequence_attention(run: tuple[dict[str, Any], dict[str, Any]], case: int,
                                                         dim: int) -> None:
    cases, outputs = run
    name = f"attn-{case}-{dim}"
    q, k, v, cu = cases[name][1][:4]
    got = outputs[name]
    assert got.shape == q.shape and got.dtype == torch.float16
    assert (got.float() - _per_sequence_attention(q, k, v, cu)).abs().max() <= ATTENTION_TOLERANCE


def test_varlen_attention_over_a_padded_work_list(run: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """The fixed-size work list that a CUDA graph replays: items of -1 do nothing, so the result is the same (an
    empty sequence included)."""
    cases, outputs = run
    q, k, v, cu = cases["items-padded"][1][:4]
    assert torch.equal(outputs["items-tight"], outputs["items-padded"])
    assert (outputs["items-padded"].float() - _per_sequence_attention(q, k, v, cu)).abs().max() <= ATTENTION_TOLERANCE
