"""The packed backend's CUDA path on the CPU: its Triton attention and add+LayerNorm kernels run by Triton's interpreter
(interpreter_run.py), in fp16, so that CI checks what only a GPU runs otherwise: the attention work list, the last
layer's first rows through the Triton kernel, and a batch padded to a CUDA graph's shape.
tests/backends/test_packed_gpu.py checks the same path compiled, on CUDA.

The tiny model keeps the interpreter's work small (it runs one Python program per row for the LayerNorm kernel).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from crossrank import Reranker
from crossrank.backends.packed import PackedBackend
from crossrank.testing import generated_sentences

pytestmark = pytest.mark.slow  # Triton's interpreter runs the kernels


def _pairs(n: int = 8, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    sentences = list(generated_sentences(400, seed=seed))
    query = rng.choice(sentences)
    return [(query, " ".join(rng.choice(sentences) for _ in range(rng.randint(0, 6)))) for _ in range(n)]


@pytest.fixture(scope="module")
def interpreted(tiny_model_dir: Path, run_interpreted: Callable[[str, Any], Any]) -> dict[str, Any]:
    return run_interpreted("packed", {"model_dir": str(tiny_model_dir), "pairs": _pairs()})  # type: ignore[no-any-return]


def test_the_cuda_path_is_what_ran(interpreted: dict[str, Any]) -> None:
    assert interpreted["attention"] == "triton" and interpreted["fuse"] is True


def test_the_cuda_path_matches_the_fp32_reference(tiny_model_dir: Path, tiny_reranker: Reranker,
                                                  interpreted: dict[str, Any]) -> None:
    pairs = _pairs()
    encoded = tiny_reranker.encode(pairs)
    assert interpreted["lengths"] == [len(e) for e in encoded]
    reference = torch.tensor(Reranker(str(tiny_model_dir), device="cpu", dtype="fp32", backend="padded")
                             .score(pairs, normalize=False))
    # The exact per-sequence attention and PyTorch's LayerNorm in the same dtype: what fp16 itself costs.
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, dtype=torch.float16).eval()
    sdpa = PackedBackend(model, device=torch.device("cpu"), dtype=torch.float16, attention="sdpa", fuse=False,
                         graphs=False)
    fp16 = sdpa.forward(encoded)
    bound = max(2e-2, 1.5 * float((fp16 - reference).abs().max()))
    assert float((interpreted["logits"] - reference).abs().max()) < bound


def test_a_batch_padded_to_a_graphs_shape_scores_the_same(interpreted: dict[str, Any]) -> None:
    """Padding rows, empty padding sequences and no-work attention items change nothing for the real sequences."""
    n, total = len(interpreted["lengths"]), sum(interpreted["lengths"])
    assert interpreted["tokens"] > total and interpreted["sequences"] > n  # it was padded
    shaped = interpreted["graph_shaped"]
    assert shaped.shape == (interpreted["sequences"],)
    assert torch.allclose(shaped[:n], interpreted["logits"], atol=1e-3, rtol=0)
