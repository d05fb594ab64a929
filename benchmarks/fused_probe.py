"""Issue 6: the fused Triton kernels (crossrank/backends/fused.py) against what they replace, in one process.

Parts, all fp16 on one GPU, the throughput.py model and text mix:
- kernels at 16,384 tokens: residual + LayerNorm (unfused vs fused); variable-length attention over real batches
  (varlen_attn's FlashAttention-2 against the memory-efficient kernel and crossrank's Triton kernel);
- a profile of one model-only pass, GPU time per kind of kernel, fuse off and on;
- model only (utilisation), end to end (``Reranker.score``, 4,000 pairs, every run listed), latency (one query, 100
  passages, median of 50), fuse off and on, and the fp16 scores against the fp32 padded reference.

    PYTHONPATH=src python benchmarks/fused_probe.py --model-dir /tmp/bm/random-v2m3 --json fused.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import crossrank.reranker as reranker_mod
import throughput as tp
from crossrank import Reranker
from crossrank.backends import fused
from crossrank.core.batching import pack_batches
from crossrank.runtime.scoring import run_batches
from crossrank.testing import build_random_reranker


def gpu_ms(fn: Callable[[], Any], reps: int = 20) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def kernels(tokens: int, hidden: int) -> dict[str, Any]:
    """Residual + LayerNorm at ``tokens`` x ``hidden``: unfused (add, then LayerNorm) against the fused kernel."""
    dt = torch.float16
    g = torch.Generator(device="cuda").manual_seed(0)
    x, r = (torch.randn(tokens, hidden, device="cuda", dtype=dt, generator=g) for _ in range(2))
    lw, lb = (torch.randn(hidden, device="cuda", dtype=dt, generator=g) for _ in range(2))
    unfused = gpu_ms(lambda: F.layer_norm(x + r, (hidden,), lw, lb, 1e-5))
    return {"tokens": tokens, "add_ln_unfused_ms": round(unfused, 4),
            "add_ln_fused_ms": round(gpu_ms(lambda: fused.add_layer_norm(x, r, lw, lb, 1e-5)), 4)}


def attention(batches: list[list[int]], heads: int, dim: int) -> dict[str, Any]:
    """Variable-length attention over real batches of the mix (one layer's worth each): PyTorch's varlen_attn (FA2)
    against the memory-efficient kernel and crossrank's Triton kernel at several tile shapes, outputs compared; the
    fastest Triton shape is used for the rest of the run."""
    from torch.nn.attention.varlen import varlen_attn

    g = torch.Generator(device="cuda").manual_seed(1)
    data = []
    for lengths in batches:
        total = sum(lengths)
        q, k, v = torch.randn(total, 3, heads, dim, device="cuda", dtype=torch.float16, generator=g).unbind(1)
        cu = torch.tensor([0, *itertools.accumulate(lengths)], device="cuda", dtype=torch.int32)
        data.append((q, k, v, cu, max(lengths)))
    scale = dim ** -0.5
    ways: dict[str, Callable[..., torch.Tensor]] = {
        "varlen_fa2": lambda q, k, v, cu, m: varlen_attn(q, k, v, cu, cu, m, m),
        # cuDNN's ragged attention (torch.ops.aten._cudnn_attention_forward) was measured here too on 2026-11-26:
        # it builds a graph per batch shape, 459 ms for 12 batches (results/fused-probe-attention-h100-20261126.json).
        "efficient": lambda q, k, v, cu, m: torch.ops.aten._efficient_attention_forward(
            q[None], k[None], v[None], None, cu, cu, m, m, 0.0, 0, False, scale=scale)[0][0],
    }
    triton_configs: dict[str, dict[str, int]] = {}
    for bm, bn, warps, stages in ((64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 4, 2), (128, 64, 8, 2), (128, 32, 4, 2),
                                  (64, 32, 4, 2), (128, 128, 8, 2), (32, 64, 4, 2)):
        cfg = {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": warps, "num_stages": stages}
        triton_configs[f"triton_{bm}x{bn}_w{warps}_s{stages}"] = cfg
        ways[f"triton_{bm}x{bn}_w{warps}_s{stages}"] = (
            lambda q, k, v, cu, m, cfg=cfg: fused.varlen_attention(q, k, v, cu, m, scale, cfg))
    ref = [ways["varlen_fa2"](*d) for d in data]
    out: dict[str, Any] = {"batches": len(batches), "tokens": sum(map(sum, batches))}
    best = (float("inf"), "")
    for name, fn in ways.items():
        try:
            err = max((fn(*d).float() - r.float()).abs().max().item() for d, r in zip(data, ref, strict=True))
            ms = gpu_ms(lambda fn=fn: [fn(*d) for d in data], reps=5)
            out[name] = {"ms": round(ms, 3), "max_err": err}
            if name.startswith("triton") and err < 1e-2 and ms < best[0]:
                best = (ms, name)
        except Exception as exc:
            out[name] = {"error": repr(exc)[:300]}
    if best[1]:
        fused.ATTENTION_CONFIG = triton_configs[best[1]]
        out["triton_best"] = fused.ATTENTION_CONFIG
    return out


def profile(fn: Callable[[], Any]) -> dict[str, Any]:
    """GPU time per kind of kernel for one call of ``fn`` (after a warm-up), and the top kernels by time."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    kinds: dict[str, float] = defaultdict(float)
    names: dict[str, float] = defaultdict(float)
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = ev.device_time
        n = ev.name.lower()
        kind = ("fused_add_ln" if "add_layer_norm" in n else "attention"
                if any(s in n for s in ("flash", "fmha", "cudnn", "attn", "attention", "sdpa")) else "gemm"
                if any(s in n for s in ("gemm", "sm90", "cutlass", "xmma", "nvjet")) else "layer_norm"
                if "layer_norm" in n else "gelu" if "gelu" in n else "copy" if "memcpy" in n or "copy" in n
                else "other")
        kinds[kind] += us
        names[ev.name[:90]] += us
    total = sum(kinds.values())
    return {"wall_ms": round(1000 * wall, 1), "gpu_busy_ms": round(total / 1000, 1),
            "by_kind_ms": {k: round(v / 1000, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
            "top": [(k, round(v / 1000, 2)) for k, v in sorted(names.items(), key=lambda kv: -kv[1])[:14]]}


def v2m3_model_and_pairs(model_dir: str, n: int) -> tuple[Path, list[str], list[tuple[str, str]]]:
    """throughput.py's random v2-m3 in ``model_dir`` (built if absent), its words, and ``n`` pairs of its mix."""
    words, pairs = tp.benchmark_mix(n)
    path = Path(model_dir)
    if not (path / "config.json").exists():
        build_random_reranker(path, tokenizer=tp.build_tokenizer(words), **tp.SIZES["v2m3"])
    return path, words, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="where throughput.py's random v2-m3 is (built if absent)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--parts", default="kernels,profile,model,e2e,latency,parity")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    arch = tp.SIZES["v2m3"]
    path, words, pairs = v2m3_model_and_pairs(args.model_dir, args.pairs)
    lat_pairs = tp.make_pairs(random.Random(5), words, 1, 100, 100, 0.1, 400)
    query, passages = lat_pairs[0][0], [p for _, p in lat_pairs]
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                           "triton": getattr(fused.triton, "__version__", None),
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(out, flush=True)

    def save() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))

    r = Reranker(str(path), device="cuda", dtype="fp16", backend="packed", max_batch_tokens=16384)
    backend: Any = r.backend
    encoded = r.encoder.encode(pairs)
    lengths = [len(e) for e in encoded]
    if "kernels" in parts:
        out["kernels"] = kernels(16384, arch["hidden"])
        plan = pack_batches(lengths, 16384, padded=False)
        out["attention"] = attention([[lengths[i] for i in b] for b in plan[:12]], arch["heads"],
                                     arch["hidden"] // arch["heads"])
        print(json.dumps(out["kernels"]), json.dumps(out["attention"]), flush=True)
        save()
    flops = tp.model_flops(lengths, arch["layers"], arch["hidden"])
    out["fuse_default"] = backend.fuse

    def model_only(budget: int) -> dict[str, Any]:
        run = lambda: run_batches(backend, encoded, budget)  # noqa: E731
        run()
        torch.cuda.reset_peak_memory_stats()
        secs = min(tp.timed("cuda", run)[1] for _ in range(3))
        return {"pairs_per_s": round(len(encoded) / secs, 1), "utilisation": round(flops / secs / 1e12 / 989.0, 4),
                "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3)}

    variants = {"unfused": (False, "varlen"), "fused": (True, "varlen"), "fused_triton_attn": (True, "triton")}
    for tag, (fuse, attn) in variants.items():
        backend.fuse, backend.attention_kind = fuse, attn
        if "profile" in parts:
            out[f"profile_{tag}_16k"] = profile(lambda: run_batches(backend, encoded, 16384))
            print(tag, json.dumps(out[f"profile_{tag}_16k"]), flush=True)
        if "model" in parts:
            for budget in (16384, 32768):
                out[f"model_{tag}_{budget // 1024}k"] = model_only(budget)
                print("model", tag, budget, out[f"model_{tag}_{budget // 1024}k"], flush=True)
        if "e2e" in parts:
            for budget in (16384, 32768):
                r.settings = dataclasses.replace(r.settings, max_batch_tokens=budget)
                r.score(pairs[:64], normalize=False)
                times = [tp.timed("cuda", lambda: r.score(pairs, normalize=False))[1] for _ in range(5)]
                out[f"e2e_{tag}_{budget // 1024}k"] = {
                    "pairs_per_s_median_runs_2_5": round(len(pairs) / statistics.median(times[1:]), 1),
                    "seconds": [round(t, 3) for t in times]}
                print("e2e", tag, budget, out[f"e2e_{tag}_{budget // 1024}k"], flush=True)
            r.settings = dataclasses.replace(r.settings, max_batch_tokens=16384)
            if tag == "fused_triton_attn":
                out[f"profile_e2e_{tag}"] = profile(lambda: r.score(pairs, normalize=False))
                print("e2e profile", json.dumps(out[f"profile_e2e_{tag}"]), flush=True)
        if "latency" in parts:
            for first in (16,):
                reranker_mod.FIRST_ENCODE_SLICE = first
                for _ in range(3):
                    r.rerank(query, passages)
                lat = [tp.timed("cuda", lambda: r.rerank(query, passages))[1] for _ in range(50)]
                out[f"latency_{tag}_first{first}_ms"] = round(1000 * statistics.median(lat), 1)
                print("latency", tag, first, out[f"latency_{tag}_first{first}_ms"], flush=True)
            reranker_mod.FIRST_ENCODE_SLICE = 16
        save()

    if "latency" in parts:
        enc = r.encoder
        t = {"encode_100_ms": tp.timed("cpu", lambda: enc.encode(lat_pairs))[1] * 1000,
             "encode_4000_ms": tp.timed("cpu", lambda: enc.encode(pairs))[1] * 1000}
        out["tokenize"] = {k: round(v, 1) for k, v in t.items()}
        print(out["tokenize"], flush=True)

    if "parity" in parts:
        some = pairs[:1000]
        ref = Reranker(str(path), device="cuda", dtype="fp32", backend="padded").score(some, normalize=False)
        got: dict[str, list[float]] = {}
        for tag, (fuse, attn) in variants.items():
            backend.fuse, backend.attention_kind = fuse, attn
            got[tag] = r.score(some, normalize=False)
        out["parity_vs_fp32_padded"] = {k: tp.order_check(v, ref, 100) for k, v in got.items()}
        out["parity_vs_fp32_padded"]["logit_std_fp32"] = statistics.pstdev(ref)
        print(out["parity_vs_fp32_padded"], flush=True)
    save()


if __name__ == "__main__":
    main()
