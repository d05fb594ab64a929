"""Issue 6 speed probe: each candidate change measured against the current path in one process, same model and texts.

Variants (all packed, fp16, the throughput.py mix):
- model only: per-batch host sync (``backend.forward`` per batch, as before) vs ``run_batches`` (logits stay on the
  GPU, one copy per call), budgets 16k/32k/64k, ``torch.compile`` of the post-attention block, and of the whole layer;
- end to end: ``Reranker.score`` with the first tokenisation slice of 1,024 pairs (before) vs a 64-pair first slice
  doubling up to 1,024 (after), at budgets 16k and 32k, compiled or not;
- latency: ``rerank`` of one query with 100 passages, median of 50, the same variants.

    PYTHONPATH=src python benchmarks/speed_probe.py --model-dir /tmp/bm/random-v2m3 --json probe.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import crossrank.reranker as reranker_mod
import throughput as tp
from crossrank import Reranker
from crossrank.backends.packed import PackedBackend, _post_attention
from crossrank.core.batching import pack_batches
from crossrank.core.tokenize import PairEncoder
from crossrank.runtime.scoring import run_batches


def compile_whole_layer(backend: PackedBackend) -> None:
    """Experimental: QKV projection + varlen attention + post-attention block as one compiled graph per layer call."""
    from torch.nn.attention.varlen import varlen_attn

    heads, hd = backend.heads, backend.head_dim

    def full_layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, cu: torch.Tensor, max_len: int,
                   *post: Any) -> torch.Tensor:
        tokens = x.shape[0]
        q, k, v = F.linear(x, w, b).view(tokens, 3, heads, hd).unbind(1)
        ctx = varlen_attn(q, k, v, cu, cu, max_len, max_len)
        return _post_attention(ctx.reshape(tokens, -1), x, *post, backend.act)

    compiled = torch.compile(full_layer, dynamic=True)
    plain = backend._layer

    def layer(i: int, x: torch.Tensor, cu: torch.Tensor, cu_host: torch.Tensor, max_len: int,
              last: bool, items: torch.Tensor | None = None) -> torch.Tensor:
        if last:
            return plain(i, x, cu, cu_host, max_len, last, items)
        w, b = backend.qkv[i]
        return compiled(x, w, b, cu, max_len, *backend.post_weights[i])

    backend._layer = layer  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--json", default=None)
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--quick", action="store_true", help="tokenisation paths and the default end to end only")
    args = ap.parse_args()
    dev = "cuda"
    path = Path(args.model_dir)
    arch = tp.SIZES["v2m3"]
    words, pairs = tp.benchmark_mix(args.pairs)
    lat_pairs = tp.make_pairs(random.Random(5), words, 1, 100, 100, 0.1, 400)
    query, passages = lat_pairs[0][0], [p for _, p in lat_pairs]
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    base = Reranker(str(path), device=dev, dtype="fp16", backend="packed", max_batch_tokens=16384)
    enc = PairEncoder(base.tokenizer, max_length=512)
    encoded = enc.encode(pairs)
    _, out["tokenize_4000_s"] = tp.timed(dev, lambda: enc.encode(pairs))
    _, out["tokenize_100_s"] = tp.timed(dev, lambda: enc.encode(lat_pairs))
    core = enc.core
    enc.core = None  # through transformers' own __call__ / batch_decode, as before
    _, out["tokenize_4000_transformers_s"] = tp.timed(dev, lambda: enc.encode(pairs))
    _, out["tokenize_100_transformers_s"] = tp.timed(dev, lambda: enc.encode(lat_pairs))
    enc.core = core
    _, out["tokenize_4000_again_s"] = tp.timed(dev, lambda: enc.encode(pairs))
    print({k: v for k, v in out.items() if k.startswith("tokenize")}, flush=True)
    lengths = [len(e) for e in encoded]
    weights_gb = sum(p.numel() * p.element_size() for p in base.model.parameters()) / 1e9
    out["weights_gb"] = round(weights_gb, 3)

    def peak_one_model() -> float:
        """Peak as if only one model were resident: weights + what the run allocated above the memory at reset."""
        return round(weights_gb + (torch.cuda.max_memory_allocated() - resident[0]) / 1e9, 3)

    resident = [0]

    def reset() -> None:
        tp.peak_reset(dev)
        resident[0] = torch.cuda.memory_allocated()
    flops = tp.model_flops(lengths, arch["layers"], arch["hidden"])
    print("tokenize", out["tokenize_4000_s"], out["tokenize_100_s"], flush=True)

    def model_only(backend: PackedBackend, budget: int, sync_each: bool) -> dict[str, Any]:
        batches = pack_batches(lengths, budget, padded=False)

        def run() -> Any:
            if sync_each:
                return [backend.forward([encoded[i] for i in b]) for b in batches]
            return run_batches(backend, encoded, budget)

        reset()
        t0 = time.perf_counter()
        run()
        first = time.perf_counter() - t0
        secs = min(tp.timed(dev, run)[1] for _ in range(3))
        return {"pairs_per_s": round(len(encoded) / secs, 1), "seconds": round(secs, 4), "first_run_s": round(first, 2),
                "utilisation": round(flops / secs / 1e12 / 989.0, 4), "peak_one_model_gb": peak_one_model(),
                "batches": len(batches)}

    def safe(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return fn()
        except Exception as exc:
            tp.peak_reset(dev)
            return {"error": repr(exc)[:400]}

    if args.quick:
        reset()
        times = [tp.timed(dev, lambda: base.score(pairs, normalize=False))[1] for _ in range(4)]
        for _ in range(3):
            base.rerank(query, passages)
        lat = [tp.timed(dev, lambda: base.rerank(query, passages))[1] for _ in range(50)]
        out["e2e_default"] = {"pairs_per_s": round(len(pairs) / statistics.median(times[1:]), 1),
                              "seconds": [round(t, 3) for t in times], "peak_one_model_gb": peak_one_model(),
                              "latency_median_ms": round(1000 * statistics.median(lat), 1)}
        print("e2e default", out["e2e_default"], flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
        return
    mo: dict[str, Any] = {}
    plain = base.backend
    assert isinstance(plain, PackedBackend)
    mo["sync_each_16k"] = model_only(plain, 16384, True)
    for budget in (16384, 32768, 65536):
        mo[f"nosync_{budget // 1024}k"] = model_only(plain, budget, False)
    comp = PackedBackend(base.model, device=base.device, dtype=base.dtype, compile=True)
    for budget in (16384, 32768):
        mo[f"compiled_post_{budget // 1024}k"] = safe(lambda b=budget: model_only(comp, b, False))
    whole = PackedBackend(base.model, device=base.device, dtype=base.dtype)
    mo["compiled_layer_16k"] = safe(lambda: (compile_whole_layer(whole), model_only(whole, 16384, False))[1])
    mo["compiled_layer_32k"] = safe(lambda: model_only(whole, 32768, False))
    for k, v in mo.items():
        print("model", k, v, flush=True)
    out["model_only"] = mo

    def reranker(budget: int, backend: PackedBackend | None) -> Reranker:
        r = Reranker(str(path), device=dev, dtype="fp16", backend="packed", max_batch_tokens=budget)
        if backend is not None:
            # Reuse the warm compiled backend's code on this reranker's own model (a fresh compile otherwise).
            r.backend = backend
        return r

    def e2e(r: Reranker, first: int) -> dict[str, Any]:
        reranker_mod.FIRST_ENCODE_SLICE = first
        r.score(pairs[:64], normalize=False)
        reset()
        times = [tp.timed(dev, lambda: r.score(pairs, normalize=False))[1] for _ in range(3)]
        res = {"pairs_per_s": round(len(pairs) / statistics.median(times), 1),
               "seconds": [round(t, 3) for t in times], "peak_one_model_gb": peak_one_model()}
        for _ in range(3):
            r.rerank(query, passages)
        lat = [tp.timed(dev, lambda: r.rerank(query, passages))[1] for _ in range(50)]
        res["latency_median_ms"] = round(1000 * statistics.median(lat), 1)
        res["latency_p90_ms"] = round(1000 * sorted(lat)[44], 1)
        return res

    ee: dict[str, Any] = {}
    r16 = reranker(16384, None)
    ee["before_first1024_16k"] = e2e(r16, 1024)
    ee["ramp64_16k"] = e2e(r16, 64)
    ee["ramp128_16k"] = e2e(r16, 128)
    ee["before_first1024_16k_again"] = e2e(r16, 1024)
    r32 = reranker(32768, None)
    ee["ramp64_32k"] = e2e(r32, 64)
    ee["first1024_32k"] = e2e(r32, 1024)
    r16.backend = comp
    ee["compiled_post_ramp64_16k"] = safe(lambda: e2e(r16, 64))
    r32.backend = comp
    ee["compiled_post_ramp64_32k"] = safe(lambda: e2e(r32, 64))
    r32.backend = whole
    ee["compiled_layer_ramp64_32k"] = safe(lambda: e2e(r32, 64))
    for k, v in ee.items():
        print("e2e", k, v, flush=True)
    out["e2e"] = ee
    tp.emit(out, args.json)


if __name__ == "__main__":
    main()
