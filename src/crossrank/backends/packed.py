"""The fast path: XLM-RoBERTa / RoBERTa / BERT cross-encoders on packed sequences, with no padding.

All sequences of a batch are concatenated into one ``[tokens, hidden]`` tensor; each keeps its own position ids, and
attention is variable-length, so no work is spent on padding and attention costs grow with each sequence's own length.
The Hugging Face module's own weights are used in place (no conversion step, no copy: the Q/K/V projections are
re-pointed at one fused ``[3*hidden, hidden]`` tensor so that the three projections are one GEMM).

Attention, in order of preference (the first three on Ampere or newer GPUs in fp16/bf16):
- crossrank's Triton kernel (:func:`crossrank.backends.fused.varlen_attention`) for batches
  whose longest sequence is at most ``fused.ATTENTION_MAX_LEN`` tokens (measured 24% faster than FlashAttention-2 on
  the benchmark's ~200-token pairs on an H100), and ``varlen_attn`` for the rest (and for everything, should the
  kernel fail to compile on some GPU);
- ``torch.nn.attention.varlen.varlen_attn`` (PyTorch's FlashAttention varlen op) where Triton is missing;
- ``flash_attn.flash_attn_varlen_func`` where flash-attn is installed and varlen_attn is not;
- everywhere else (CPU, fp32, older GPUs, MPS): ``scaled_dot_product_attention`` per sequence. Measured on the 2-core
  CPU with a MiniLM-sized model this beats padding the batch (see benchmarks/RESULTS.md), and it is exact.

On CUDA in fp16/bf16 each residual add + LayerNorm is one Triton kernel (:mod:`crossrank.backends.fused`) instead of
two passes; ``fuse=False`` keeps PyTorch's ops. There too the feed-forward's bias + GELU run in the GEMM's epilogue
(:func:`gemm_epilogue`); ``epilogue=False`` keeps the separate exact-GELU pass.

The last layer only needs the first token of each sequence (the classification head reads nothing else), so its
attention is computed for those queries only (their first query block, with the Triton kernel) and its output
projection and feed-forward run on one row per sequence.

With the Triton kernels, batches of up to :data:`GRAPH_MAX_TOKENS` tokens are replayed as CUDA graphs of the whole
forward, one per padded shape (:func:`graph_bucket`): one launch instead of ~170 from Python, which is most of what a
small batch costs the host (one query with 100 passages: 35 ms instead of 43 on an H100). ``graphs=False`` turns
them off.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from crossrank.backends import fused
from crossrank.core.tokenize import EncodedPair
from crossrank.model.devices import is_out_of_memory

log = logging.getLogger(__name__)

_ROBERTA_TYPES = ("xlm-roberta", "roberta", "camembert")
_BERT_TYPES = ("bert",)
_GELU_ACTS = ("gelu", "gelu_new", "gelu_python", "relu")

GRAPH_TOKEN_STEP = 1024
"""A batch replayed as a CUDA graph is padded to a multiple of this many tokens (at most 1,023 rows of padding, which
every layer computes and nothing reads)."""
GRAPH_MAX_TOKENS = 8192
"""Largest batch replayed as a CUDA graph. A graph saves the host ~7 ms of kernel launches per batch, which is what a
small batch costs (one query's first slices); a large one keeps the GPU busy for longer than its launches take, and
ran ~2.5% slower as a graph on two H200s (benchmarks/RESULTS.md), so it runs op by op."""
GRAPH_MOST = 64
"""Most CUDA graphs one backend captures (one per padded shape); batches of any further shape run op by op."""


def graph_bucket(tokens: int, sequences: int, block_m: int) -> tuple[int, int, int]:
    """The padded shape ``(tokens, sequences, attention work items)`` of a batch replayed as a CUDA graph: tokens
    rounded up to a multiple of :data:`GRAPH_TOKEN_STEP`, sequences up to a power of two (at least 16), and the most
    work items ``tokens`` and ``sequences`` can need (:func:`crossrank.backends.fused.attention_items`).

    >>> graph_bucket(30_000, 150, 64)
    (30720, 256, 736)
    """
    padded_tokens = -(-max(tokens, 1) // GRAPH_TOKEN_STEP) * GRAPH_TOKEN_STEP
    padded_sequences = max(16, 1 << (max(sequences, 1) - 1).bit_length())
    return padded_tokens, padded_sequences, padded_tokens // block_m + padded_sequences


@dataclass(frozen=True)
class _Inputs:
    """A batch's index tensors in one pinned host buffer: ids, positions and token types (``tokens`` each), the
    ``sequences + 1`` offsets, then ``items`` attention work items. Padded (for a CUDA graph) where ``tokens`` and
    ``sequences`` exceed the batch's own: padding rows are token 0 at the first position, padding sequences empty."""

    host: torch.Tensor
    tokens: int
    sequences: int
    items: int
    cu_host: torch.Tensor  # the batch's own offsets (no padding sequences), on the host
    max_len: int


@dataclass(frozen=True)
class _Graph:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: torch.Tensor  # the device buffer the graph reads; each replay copies a batch's inputs into it first
    logits: torch.Tensor  # the device tensor the graph writes


def _base(model: Any) -> Any:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in _ROBERTA_TYPES:
        return getattr(model, "roberta", None)
    if model_type in _BERT_TYPES:
        return getattr(model, "bert", None)
    return None


def supports(model: Any) -> bool:
    """True for a one-logit ``*ForSequenceClassification`` of the RoBERTa/XLM-R/BERT family with the standard layout.

    Anything unusual (relative position embeddings, decoder mode, a custom head) is left to the padded backend.
    """
    config = getattr(model, "config", None)
    base = _base(model)
    if config is None or base is None or getattr(model, "classifier", None) is None:
        return False
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return False
    if getattr(config, "hidden_act", None) not in _GELU_ACTS:
        return False
    try:
        layer = base.encoder.layer[0]
        _ = (layer.attention.self.query, layer.attention.output.dense, layer.intermediate.dense, layer.output.dense)
        _ = (base.embeddings.word_embeddings, base.embeddings.position_embeddings, base.embeddings.LayerNorm)
    except AttributeError:
        return False
    if config.model_type in _BERT_TYPES:
        return getattr(base, "pooler", None) is not None and isinstance(model.classifier, torch.nn.Linear)
    return hasattr(model.classifier, "dense") and hasattr(model.classifier, "out_proj")


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


def _add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """``layer_norm(x + residual)`` with PyTorch's ops (two passes); :func:`crossrank.backends.fused.add_layer_norm`
    is the one-pass kernel for CUDA."""
    return F.layer_norm(x + residual, (x.shape[-1],), weight, bias, eps)


def _post_attention(
    ctx: torch.Tensor, x: torch.Tensor, o_w: torch.Tensor, o_b: torch.Tensor, ln1_w: torch.Tensor, ln1_b: torch.Tensor,
    ln1_eps: float, i_w: torch.Tensor, i_b: torch.Tensor, f_w: torch.Tensor, f_b: torch.Tensor, ln2_w: torch.Tensor,
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
    after it, the epilogue rounds once, and the two GELUs differ by about that rounding. Measured (H100, issue 6 in
    benchmarks/RESULTS.md): 1.3-1.4x faster than GEMM + GELU pass, model only 48.2% -> 52.8% of peak in fp16, logits
    as close to the fp32 reference as with the exact pass (0.0021 on 1,000 pairs of v2-m3's shape, either way)."""
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


_T = torch.Tensor
_PostWeights = tuple[_T, _T, _T, _T, float, _T, _T, _T, _T, _T, _T, float]
"""``_post_attention``'s weights after ``ctx`` and ``x``, in its order."""


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` through oneDNN's matmul (the op ``torch.compile`` uses for CPU linears) instead of MKL's sgemm:
    on the 2-core AMD CPU it measured 5-15% faster on these shapes (benchmarks/RESULTS.md), with the same result to
    ~1e-6."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def cpu_linear(device: torch.device, dtype: torch.dtype) -> Callable[..., torch.Tensor]:
    """The linear used by the packed layers: oneDNN's on CPU in fp32 where this torch has it and it agrees with
    ``F.linear`` on a probe (it is a private op, so a torch that changed it falls back instead of failing), else
    ``F.linear``."""
    if device.type != "cpu" or dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return F.linear
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(shape, generator=gen) for shape in ((5, 16), (8, 16), (8,)))
        with torch.inference_mode():
            if torch.allclose(_onednn_linear(x, w, b), F.linear(x, w, b), atol=1e-5):
                return _onednn_linear
    except (RuntimeError, AttributeError, TypeError):
        pass
    return F.linear


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


class PackedBackend:
    """Runs a supported cross-encoder on one packed ``[tokens, hidden]`` batch; one float32 logit per sequence."""

    name = "packed"
    padded = False

    def __init__(
        self, model: Any, *, device: torch.device, dtype: torch.dtype, attention: str = "auto", compile: bool = False,
        fuse: bool | None = None, epilogue: bool | None = None, graphs: bool | None = None,
    ) -> None:
        if not supports(model):
            raise ValueError(f"the packed backend does not know {type(model).__name__}")
        self.model = model
        self.device = device
        self.dtype = dtype
        config = model.config
        self.base: Any = _base(model)
        self.is_bert = config.model_type in _BERT_TYPES
        emb = self.base.embeddings
        # RoBERTa numbers positions from padding_idx + 1; BERT from 0.
        self.position_offset = 0 if self.is_bert else int(emb.padding_idx if hasattr(emb, "padding_idx") else
                                                             config.pad_token_id) + 1
        self.heads = int(config.num_attention_heads)
        self.head_dim = int(config.hidden_size) // self.heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.layers = list(self.base.encoder.layer)
        self._fuse_qkv()
        self._collect_post_weights()
        # The module's own activation (exact erf GELU for "gelu"), so numerics match the reference.
        self.act = self.layers[0].intermediate.intermediate_act_fn
        # Optional torch.compile of the post-attention part (dynamic token count, one graph for all layers); off by
        # default: see benchmarks/RESULTS-throughput.md for what it measured.
        self._post_compiled: Callable[..., torch.Tensor] | None = (
            torch.compile(_post_attention, dynamic=True) if compile else None
        )
        self.attention_kind = self._choose_attention(attention)
        self.linear = cpu_linear(device, dtype)
        self._cuda = device.type == "cuda"
        # The Triton residual+LayerNorm kernel (CUDA, fp16/bf16); None: wherever it can run.
        can_fuse = fused.available(device, dtype) and not compile
        if fuse and not can_fuse:
            raise ValueError("fuse=True needs a CUDA device, fp16/bf16, Triton, and compile=False")
        self.fuse = can_fuse if fuse is None else fuse
        # bias + activation inside the feed-forward's first GEMM (CUDA, fp16/bf16); None: wherever it can run.
        self.up = None if compile or epilogue is False else gemm_epilogue(config.hidden_act, device, dtype)
        if epilogue and self.up is None:
            raise ValueError("epilogue=True needs a CUDA device, fp16/bf16, a GELU or ReLU model, and compile=False")
        # CUDA graphs of the whole forward, one per padded batch shape (see _graphed); None: wherever they can run.
        can_graph = self.attention_kind == "triton" and self.fuse and not compile
        if graphs and not can_graph:
            raise ValueError("graphs=True needs the Triton attention and LayerNorm kernels (CUDA, fp16/bf16, Triton)")
        self.graphs = can_graph if graphs is None else graphs
        self._graphs: dict[tuple[int, int, int], _Graph] = {}
        self._graph_pool: Any = None
        self._graph_stream: torch.cuda.Stream | None = None
        # One batch at a time through the graphs: they share their inputs' buffer per shape and one memory pool.
        self._graph_lock = threading.Lock()

    def _fuse_qkv(self) -> None:
        """Point each layer's query/key/value weights at slices of one fused tensor: one GEMM instead of three, and
        no extra memory (the HF modules keep working, on views of the same storage)."""
        self.qkv: list[tuple[torch.Tensor, torch.Tensor]] = []
        for layer in self.layers:
            attn = layer.attention.self
            mods = (attn.query, attn.key, attn.value)
            with torch.no_grad():
                weight = torch.cat([m.weight for m in mods]).contiguous()
                bias = torch.cat([m.bias for m in mods]).contiguous()
                rows = mods[0].weight.shape[0]
                for i, m in enumerate(mods):
                    m.weight = torch.nn.Parameter(weight[i * rows : (i + 1) * rows], requires_grad=False)
                    m.bias = torch.nn.Parameter(bias[i * rows : (i + 1) * rows], requires_grad=False)
            self.qkv.append((weight, bias))

    def _choose_attention(self, attention: str) -> str:
        half = self.dtype in (torch.float16, torch.bfloat16)
        if attention == "auto":
            if not (half and _flash_attention_capable(self.device)):
                return "sdpa"
            if _varlen_attention() is not None:
                usable = fused.available(self.device, self.dtype) and self.head_dim in fused.ATTENTION_HEAD_DIMS
                return "triton" if usable else "varlen"
            if _flash_attention() is not None:
                return "flash_attn"
            return "sdpa"
        if attention not in ("varlen", "flash_attn", "triton", "sdpa"):
            raise ValueError(f"unknown attention {attention!r}: use auto, varlen, flash_attn, triton or sdpa")
        if attention == "triton" and (_varlen_attention() is None or not fused.available(self.device, self.dtype)):
            raise ValueError("attention='triton' needs Triton, a CUDA device, fp16/bf16 and torch's varlen_attn")
        if attention != "sdpa" and not (self.device.type == "cuda" and half):
            raise ValueError(f"attention={attention!r} needs a CUDA device and fp16/bf16")
        return attention

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, cu_host: torch.Tensor,
        max_len: int, first: torch.Tensor | None = None, items: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention within each sequence, ``[tokens, heads, dim]``; where ``first`` (each sequence's first row) is
        given, for those rows only. ``items``: the Triton kernel's work list, given where that kernel runs this
        batch."""
        first_only = first is not None
        if self.attention_kind == "sdpa":
            return _sdpa_per_sequence(q, k, v, cu, cu_host, max_len, first_only)
        n = cu.numel() - 1
        if self.attention_kind == "triton" and items is not None:
            try:
                if first is not None:  # the first query block of each sequence, then its first row
                    firsts = torch.arange(n, device=cu.device, dtype=torch.int64) * fused.ITEM_SEQUENCE
                    return fused.varlen_attention_items(q, k, v, cu, firsts, self.scale)[first]
                return fused.varlen_attention_items(q, k, v, cu, items, self.scale)
            except Exception as exc:  # a GPU or Triton version the kernel does not compile for: FA2 from now on
                if is_out_of_memory(exc):
                    raise
                log.warning("the Triton attention kernel failed on %s (%s); using varlen_attn from now on",
                            self.device, exc)
                self.attention_kind = "varlen"
                self.graphs = False
        if first is not None:
            q = q[first]
            cu_q = torch.arange(n + 1, device=cu.device, dtype=cu.dtype)
            max_q = 1
        else:
            cu_q, max_q = cu, max_len
        if self.attention_kind in ("varlen", "triton"):  # with "triton": sequences longer than the kernel takes
            fn = _varlen_attention()
            assert fn is not None
            return fn(q, k, v, cu_q, cu, max_q, max_len)
        fn = _flash_attention()
        assert fn is not None
        return fn(q, k, v, cu_q, cu, max_q, max_len)

    def _uses_items(self, max_len: int) -> bool:
        return self.attention_kind == "triton" and max_len <= fused.ATTENTION_MAX_LEN

    def _inputs(self, batch: Sequence[EncodedPair], graph: bool = False) -> _Inputs:
        """All index tensors of the batch built at once on the host, in one buffer (:class:`_Inputs`), padded to
        :func:`graph_bucket`'s shape if ``graph``. On CUDA the buffer is pinned, so the transfer is a single
        asynchronous copy that never waits for the GPU (a pageable copy would wait for the stream)."""
        lengths = np.fromiter((len(p) for p in batch), dtype=np.int64, count=len(batch))
        total, n, max_len = int(lengths.sum()), len(batch), int(lengths.max())
        block_m = fused.ATTENTION_CONFIG["BLOCK_M"]
        if graph:
            tokens, sequences, items = graph_bucket(total, n, block_m)
            work: np.ndarray | None = fused.attention_items(lengths, block_m, size=items)
        else:
            tokens, sequences = total, n
            work = fused.attention_items(lengths, block_m) if self._uses_items(max_len) else None
            items = 0 if work is None else len(work)
        host = torch.empty(3 * tokens + sequences + 1 + items, dtype=torch.long, pin_memory=self._cuda)
        flat = host.numpy()
        buf = flat[: 3 * tokens].reshape(3, tokens)
        cu = flat[3 * tokens : 3 * tokens + sequences + 1]
        cu[0] = 0
        np.cumsum(lengths, out=cu[1 : n + 1])
        cu[n + 1 :] = total
        buf[0, :total] = np.fromiter(itertools.chain.from_iterable(p.input_ids for p in batch), dtype=np.int64,
                                     count=total)
        buf[1, :total] = np.arange(total, dtype=np.int64) - np.repeat(cu[:n], lengths) + self.position_offset
        if batch[0].token_type_ids is not None:
            buf[2, :total] = np.fromiter(
                itertools.chain.from_iterable(p.token_type_ids or [0] * len(p) for p in batch), dtype=np.int64,
                count=total,
            )
        else:
            buf[2, :total] = 0
        buf[0, total:], buf[1, total:], buf[2, total:] = 0, self.position_offset, 0
        if work is not None:
            flat[3 * tokens + sequences + 1 :] = work
        return _Inputs(host, tokens, sequences, items, host[3 * tokens : 3 * tokens + n + 1], max_len)

    def _layer(
        self, i: int, x: torch.Tensor, cu: torch.Tensor, cu_host: torch.Tensor, max_len: int, last: bool,
        items: torch.Tensor | None = None,
    ) -> torch.Tensor:
        weight, bias = self.qkv[i]
        tokens = x.shape[0]
        qkv = self.linear(x, weight, bias).view(tokens, 3, self.heads, self.head_dim)
        q, k, v = qkv.unbind(1)
        first = None
        if last:
            # Only the first token of each sequence reaches the head: attention for those rows, and only those rows
            # for the rest of the layer. A padding sequence (CUDA graphs) starts at the end: keep it in range.
            first = cu_host[:-1] if self.attention_kind == "sdpa" else cu[:-1].long().clamp_max(tokens - 1)
        ctx = self._attend(q, k, v, cu, cu_host, max_len, first=first, items=items)
        if first is not None:
            x = x[first]
        ctx = ctx.reshape(ctx.shape[0], -1)
        if self._post_compiled is not None and not last:
            return self._post_compiled(ctx, x, *self.post_weights[i], self.act)
        add_norm = fused.add_layer_norm if self.fuse else _add_layer_norm
        return _post_attention(ctx, x, *self.post_weights[i], self.act, linear=self.linear, add_norm=add_norm,
                               up=self.up)

    def _collect_post_weights(self) -> None:
        """Everything after attention, as plain tensors, so one function (compiled or not) serves all layers."""
        self.post_weights: list[_PostWeights] = []
        for layer in self.layers:
            a, inter, out = layer.attention.output, layer.intermediate, layer.output
            self.post_weights.append((
                a.dense.weight, a.dense.bias, a.LayerNorm.weight, a.LayerNorm.bias, a.LayerNorm.eps,
                inter.dense.weight, inter.dense.bias, out.dense.weight, out.dense.bias,
                out.LayerNorm.weight, out.LayerNorm.bias, out.LayerNorm.eps,
            ))

    @torch.inference_mode()
    def forward(self, batch: Sequence[EncodedPair]) -> torch.Tensor:
        """One logit per sequence of ``batch``, as a 1-D float32 tensor on the device, in batch order; nothing waits
        for the GPU.

        On CUDA it runs with this backend's GPU as the current device, whatever the calling thread's is: Triton
        launches its kernels on the current device, so a model on ``cuda:1`` called from a thread whose current device
        is ``cuda:0`` would otherwise fail ("Pointer argument cannot be accessed from Triton")."""
        with torch.cuda.device(self.device) if self._cuda else contextlib.nullcontext():
            return self._forward_device(batch)

    def _forward_device(self, batch: Sequence[EncodedPair]) -> torch.Tensor:
        lengths = [len(p) for p in batch]
        if self.graphs and sum(lengths) <= GRAPH_MAX_TOKENS and self._uses_items(max(lengths)):
            logits = self._graphed(batch)
            if logits is not None:
                return logits
        inputs = self._inputs(batch)
        return self._forward_inputs(inputs, inputs.host.to(self.device, non_blocking=self._cuda))

    def _forward_inputs(self, inputs: _Inputs, dev: torch.Tensor) -> torch.Tensor:
        """The forward pass from ``dev``, the device copy of ``inputs.host``: float32 logits of every sequence
        (padding ones too), on the device. Waits for nothing, so a CUDA graph can capture it."""
        tokens, sequences = inputs.tokens, inputs.sequences
        idx = dev[: 3 * tokens].view(3, tokens)
        cu = dev[3 * tokens : 3 * tokens + sequences + 1].to(torch.int32)
        items = dev[3 * tokens + sequences + 1 :] if inputs.items else None
        emb = self.base.embeddings
        x = emb.word_embeddings(idx[0]) + emb.position_embeddings(idx[1]) + emb.token_type_embeddings(idx[2])
        x = emb.LayerNorm(x)
        for i in range(len(self.layers)):
            x = self._layer(i, x, cu, inputs.cu_host, inputs.max_len, last=i == len(self.layers) - 1, items=items)
        first = x.unsqueeze(1)  # [sequences, 1, hidden]: the heads read features[:, 0]
        head_in = self.base.pooler(first) if self.is_bert else first
        logits = self.model.classifier(head_in)
        return logits.view(-1).float()

    def _graphed(self, batch: Sequence[EncodedPair]) -> torch.Tensor | None:
        """The batch through a CUDA graph of the whole forward (one launch instead of ~170 per batch, which is what
        holds the host back with short batches and with several GPUs fed by one process), captured once per padded
        shape (:func:`graph_bucket`). None where this shape gets no graph (:data:`GRAPH_MOST` reached, or capture
        failed: then graphs are off for this backend and the caller runs the batch op by op)."""
        inputs = self._inputs(batch, graph=True)
        key = (inputs.tokens, inputs.sequences, inputs.items)
        with self._graph_lock:
            captured = self._graphs.get(key)
            if captured is None:
                if len(self._graphs) >= GRAPH_MOST:
                    return None
                captured = self._capture(inputs)
                if captured is None:
                    return None
                self._graphs[key] = captured
            captured.inputs.copy_(inputs.host, non_blocking=True)
            captured.graph.replay()
            return captured.logits[: len(batch)].clone()

    def _capture(self, inputs: _Inputs) -> _Graph | None:
        """Capture the forward for ``inputs``' shape, all graphs of this backend sharing one memory pool (they run
        one at a time, and each replay's logits are copied out before the next). The first capture is preceded by
        one run outside any graph (Triton compiles its kernels, cuBLAS sets up its workspace)."""
        dev = inputs.host.to(self.device)
        try:
            if self._graph_stream is None:
                stream = torch.cuda.Stream(self.device)
                stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(stream):
                    self._forward_inputs(inputs, dev)
                torch.cuda.current_stream(self.device).wait_stream(stream)
                self._graph_stream = stream
                self._graph_pool = torch.cuda.graph_pool_handle()
            if not self.graphs:  # the warm-up found the Triton attention failing
                return None
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._graph_pool, stream=self._graph_stream,
                                  capture_error_mode="thread_local"):
                logits = self._forward_inputs(inputs, dev)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            log.warning("CUDA graph capture failed on %s (%s); running batches op by op from now on", self.device,
                        exc)
            self.graphs = False
            return None
        return _Graph(graph, dev, logits)
