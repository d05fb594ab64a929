"""The packed backend: cross-encoders of the XLM-R/RoBERTa/BERT family on packed sequences, with no padding.

:mod:`.backend` holds :class:`PackedBackend` (the forward, the choice of attention, CUDA graphs), :mod:`.architectures`
the models it runs, :mod:`.attention` the attention ops besides crossrank's Triton kernel
(:mod:`crossrank.backends.fused`), :mod:`.layers` everything of a layer after attention and the linears it uses,
:mod:`.graphs` the shapes and buffers of a CUDA graph.
"""

from __future__ import annotations

from crossrank.backends.packed.architectures import supports
from crossrank.backends.packed.backend import PackedBackend
from crossrank.backends.packed.graphs import GRAPH_MAX_TOKENS, GRAPH_MOST, GRAPH_TOKEN_STEP, graph_bucket
from crossrank.backends.packed.layers import cpu_linear, gemm_epilogue

__all__ = [
    "GRAPH_MAX_TOKENS",
    "GRAPH_MOST",
    "GRAPH_TOKEN_STEP",
    "PackedBackend",
    "cpu_linear",
    "gemm_epilogue",
    "graph_bucket",
    "supports",
]
