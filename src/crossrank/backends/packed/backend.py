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
from typing import Any

import numpy as np
import torch

from crossrank.backends import fused
from crossrank.backends.packed.architectures import _BERT_TYPES, _base, supports
from crossrank.backends.packed.attention import (
    _flash_attention,
    _flash_attention_capable,
    _sdpa_per_sequence,
    _varlen_attention,
)
from crossrank.backends.packed.graphs import GRAPH_MAX_TOKENS, GRAPH_MOST, _Graph, _Inputs, graph_bucket
from crossrank.backends.packed.layers import _add_layer_norm, _post_attention, _PostWeights, cpu_linear, gemm_epilogue
from crossrank.backends.quantized import LowPrecisionLinears, gelu_up
from crossrank.core.tokenize import EncodedPair
from crossrank.model.devices import dtype_name, is_out_of_memory, reduced_cpu_precision
from crossrank.model.heap import release_free_heap

log = logging.getLogger("crossrank.backends.packed")


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
        # default.
        self._post_compiled: Callable[..., torch.Tensor] | None = (
            torch.compile(_post_attention, dynamic=True) if compile else None
        )
        self.attention_kind = self._choose_attention(attention)
        self.linear: Callable[..., torch.Tensor] = cpu_linear(device, dtype)
        if reduced_cpu_precision(device, dtype):
            if compile:
                raise ValueError(f"compile=True does not run the CPU's {dtype_name(dtype)} linears; use compile=False")
            self._prepare_linears(LowPrecisionLinears(dtype))
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
        if device.type == "cpu" and self.up is None:  # the exact GELU, in place
            self.up = gelu_up(self.linear, config.hidden_act)
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
        self.qkv: list[tuple[Any, torch.Tensor | None]] = []  # a tensor, or its prepared form (_prepare_linears)
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

    def _prepare_linears(self, linears: LowPrecisionLinears) -> None:
        """Every linear of the encoder layers in bf16 or int8 (the CPU's reduced precisions): each weight (with its
        bias) in the backend's lists is replaced by its prepared form, and the model's own fp32 copy is freed (int8:
        v2-m3's encoder linears take a quarter of the memory). Embeddings, LayerNorms, attention and the classifier
        stay fp32."""
        def ln_range(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            return weight.abs() + bias.abs()

        emb_ln = self.base.embeddings.LayerNorm
        ranges = [ln_range(emb_ln.weight, emb_ln.bias)] + [ln_range(*post[9:11]) for post in self.post_weights]
        for i, layer in enumerate(self.layers):
            (qkv, qkv_bias), post = self.qkv[i], list(self.post_weights[i])
            # Q/K/V and the feed-forward's up projection read LayerNorm outputs; the output projection and the
            # feed-forward's down projection read attention and GELU outputs.
            self.qkv[i] = (linears.prepare(qkv, qkv_bias, ranges[i]), None)
            post[0:2] = linears.prepare(post[0], post[1], None), None
            post[5:7] = linears.prepare(post[5], post[6], ln_range(post[2], post[3])), None
            post[7:9] = linears.prepare(post[7], post[8], None), None
            self.post_weights[i] = tuple(post)  # the same 12 entries
            attn = layer.attention.self
            for module in (attn.query, attn.key, attn.value, layer.attention.output.dense, layer.intermediate.dense,
                           layer.output.dense):
                module.weight = torch.nn.Parameter(module.weight.new_empty(0), requires_grad=False)
        self.linear = linears
        release_free_heap()  # else the freed copies stay in the loader threads' arenas, resident until reused

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
        one at a time, and each replay's logits are copied out before the next). Each capture is preceded by one run
        of the same shape outside any graph, on the capturing thread: what may not happen inside a capture happens
        there (Triton compiles its kernels; cuBLAS creates this thread's handle and its workspace, for a thread that
        has not multiplied yet, such as a service's model thread after the library was used on the main one)."""
        dev = inputs.host.to(self.device)
        try:
            if self._graph_stream is None:
                self._graph_stream = torch.cuda.Stream(self.device)
                self._graph_pool = torch.cuda.graph_pool_handle()
            stream = self._graph_stream
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                self._forward_inputs(inputs, dev)
            torch.cuda.current_stream(self.device).wait_stream(stream)
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
