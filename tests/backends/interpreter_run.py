"""Runs the CUDA path's Triton code under Triton's CPU interpreter and saves what it returns, for the tests.

    TRITON_INTERPRET=1 python interpreter_run.py KIND REQUEST OUT

KIND ``kernels``: REQUEST (torch.save) maps case names to ``(function, args)`` of crossrank.backends.fused; OUT maps
them to the results. KIND ``packed``: REQUEST is ``{"model_dir": ..., "pairs": [...]}``; the packed backend in fp16
runs those pairs the way it runs them on CUDA (Triton attention and add+LayerNorm), op by op and padded to a CUDA
graph's shape, and OUT holds the logits of both and what was chosen.

Started by the tests (conftest.py's ``run_interpreted``) in a process of its own: Triton decides at import time whether
its own library functions (``tl.sum``, ``tl.max``, ...) are interpreted, so the variable must be set before anything
imports Triton, and must not be set in the test process, where it would turn the GPU tests' kernels into interpreted
ones too.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run this with TRITON_INTERPRET=1"

from crossrank.backends import fused  # noqa: E402  (after the check: Triton is imported here)

KERNELS = {
    "add_layer_norm": fused.add_layer_norm,
    "varlen_attention": fused.varlen_attention,
    "varlen_attention_items": fused.varlen_attention_items,
}


def kernels(request: dict[str, tuple[str, tuple[Any, ...]]]) -> dict[str, torch.Tensor]:
    return {name: KERNELS[function](*args) for name, (function, args) in request.items()}


def packed(request: dict[str, Any]) -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from crossrank.backends.packed import backend as packed_backend
    from crossrank.backends.packed import graphs as packed_graphs
    from crossrank.core.tokenize import PairEncoder

    # The interpreter runs the kernels on CPU tensors, so let the backend take its CUDA path on the CPU; and pad to a
    # graph's shape in steps of 128 tokens instead of 1,024, which keeps the interpreter's work small.
    fused.available = lambda device, dtype: dtype in fused.HALF
    packed_backend._flash_attention_capable = lambda device: True
    packed_graphs.GRAPH_TOKEN_STEP = 128
    model = AutoModelForSequenceClassification.from_pretrained(request["model_dir"], dtype=torch.float16).eval()
    backend = packed_backend.PackedBackend(model, device=torch.device("cpu"), dtype=torch.float16, graphs=False)
    tokenizer = AutoTokenizer.from_pretrained(request["model_dir"])
    encoded = PairEncoder(tokenizer, max_length=512).encode(request["pairs"])
    logits = backend.forward(encoded)
    inputs = backend._inputs(encoded, graph=True)  # what a CUDA graph replays, here run op by op
    with torch.inference_mode():
        shaped = backend._forward_inputs(inputs, inputs.host)
    return {"attention": backend.attention_kind, "fuse": backend.fuse, "logits": logits, "graph_shaped": shaped,
            "tokens": inputs.tokens, "sequences": inputs.sequences, "items": inputs.items,
            "lengths": [len(e) for e in encoded]}


if __name__ == "__main__":
    kind, request_path, out_path = sys.argv[1:]
    handler = {"kernels": kernels, "packed": packed}[kind]
    torch.save(handler(torch.load(request_path)), out_path)
