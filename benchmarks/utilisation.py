"""How close the packed backend's model-only pass comes to what the GPU's GEMMs allow, at crossrank's defaults.

For each dtype (``--dtypes``) and token budget (``--budgets``; 32,768 is the GPU default), on throughput.py's random
v2-m3 and text mix, pre-tokenised:
- model only (best of 3): pairs/s and utilisation of 989 TFLOP/s (H100/H200 dense fp16/bf16), FLOPs counted on real
  tokens only (throughput.model_flops: linear layers + attention);
- a profile of one such pass: GPU time by kind of kernel (GEMM, attention, add+LayerNorm, ...), the rate the GEMMs
  and attention reach inside it, and the utilisation the pass would have if only its GEMMs took time;
- the layer's four linears alone (QKV, output, up and down projections with their biases, 32,768 tokens): what
  cuBLAS reaches on these shapes.

    PYTHONPATH=src python benchmarks/utilisation.py --model-dir /tmp/bm/random-v2m3 --json utilisation.json
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import throughput as tp
from crossrank.core.batching import pack_batches
from crossrank.core.tokenize import PairEncoder
from crossrank.model.devices import DTYPES
from crossrank.testing import build_random_reranker

PEAK_TFLOPS = tp.PEAK_TFLOPS["cuda"]


def gpu_ms(fn: Callable[[], Any], reps: int = 20) -> float:
    """Mean GPU milliseconds of ``fn`` over ``reps`` calls, after three warm-up calls."""
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def kernel_kind(name: str) -> str:
    """The kind of a CUDA kernel, from its name."""
    n = name.lower()
    if "add_layer_norm" in n:
        return "fused_add_ln"
    if any(s in n for s in ("flash", "fmha", "cudnn", "attn", "attention", "sdpa")):
        return "attention"
    if any(s in n for s in ("gemm", "sm90", "cutlass", "xmma", "nvjet")):
        return "gemm"
    if "layer_norm" in n:
        return "layer_norm"
    if "gelu" in n:
        return "gelu"
    return "copy" if "memcpy" in n or "copy" in n else "other"


def profile(fn: Callable[[], Any]) -> dict[str, Any]:
    """GPU time per kind of kernel for one call of ``fn`` (after a warm-up), and the wall time of that call."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    kinds: dict[str, float] = defaultdict(float)
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            kinds[kernel_kind(ev.name)] += ev.device_time
    return {"wall_ms": round(1000 * wall, 1), "gpu_busy_ms": round(sum(kinds.values()) / 1000, 1),
            "by_kind_ms": {k: round(v / 1000, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}}


def model_pass(backend: Any, encoded: Sequence[Any], budget: int) -> Callable[[], None]:
    """One model-only pass over ``encoded`` in crossrank's batches of ``budget`` tokens: every batch queued on the
    GPU (``forward`` returns the logits on the device without waiting), then one wait for all of them."""
    batches = pack_batches([len(e) for e in encoded], budget, padded=backend.padded)
    def run() -> None:
        for batch in batches:
            backend.forward([encoded[i] for i in batch])
        torch.cuda.synchronize()

    return run


def plain_gemms(dtype: torch.dtype, tokens: int, hidden: int, inner: int) -> dict[str, Any]:
    """The layer's four linears on ``tokens`` rows, alone: ms and TFLOP/s each, and together."""
    g = torch.Generator(device="cuda").manual_seed(0)
    shapes = {"qkv": (hidden, 3 * hidden), "out": (hidden, hidden), "up": (hidden, inner), "down": (inner, hidden)}
    out: dict[str, Any] = {}
    total_ms = total_flops = 0.0
    for name, (k, n) in shapes.items():
        x = torch.randn(tokens, k, device="cuda", dtype=dtype, generator=g)
        w = torch.randn(n, k, device="cuda", dtype=dtype, generator=g) * k ** -0.5
        b = torch.randn(n, device="cuda", dtype=dtype, generator=g)
        ms = gpu_ms(functools.partial(F.linear, x, w, b), reps=50)
        flops = 2.0 * tokens * k * n
        out[name] = {"ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 1)}
        total_ms += ms
        total_flops += flops
    out["all_four_tflops"] = round(total_flops / total_ms / 1e9, 1)
    out["all_four_share_of_peak"] = round(total_flops / total_ms / 1e9 / PEAK_TFLOPS, 4)
    return out


def measure(path: Path, tokenizer: Any, pairs: list[tuple[str, str]], dtype: str, budgets: list[int]
            ) -> dict[str, Any]:
    """Model only and its profile at each budget, crossrank's defaults otherwise."""
    arch = tp.SIZES["v2m3"]
    layers, hidden = arch["layers"], arch["hidden"]
    backend = tp.model_backend(path, "cuda", dtype, "packed")
    encoded = PairEncoder(tokenizer, max_length=512).encode(pairs)
    lengths = [len(e) for e in encoded]
    flops = tp.model_flops(lengths, layers, hidden)
    gemm_flops = tp.linear_flops(lengths, layers, hidden)
    rows: dict[str, Any] = {}
    for budget in budgets:
        run = model_pass(backend, encoded, budget)
        run()
        secs = min(tp.timed("cuda", run)[1] for _ in range(3))
        prof = profile(run)
        kinds = prof["by_kind_ms"]
        gemm_s, attn_s = kinds.get("gemm", 0.0) / 1000, kinds.get("attention", 0.0) / 1000
        row = {"backend": backend.name, "pairs_per_s": round(len(pairs) / secs, 1),
               "utilisation": round(flops / secs / 1e12 / PEAK_TFLOPS, 4), "profile": prof,
               "gemm_tflops_in_model": round(gemm_flops / gemm_s / 1e12, 1),
               "attention_tflops_in_model": round((flops - gemm_flops) / attn_s / 1e12, 1) if attn_s else None,
               "gemm_share_of_profiled_wall": round(gemm_s / (prof["wall_ms"] / 1000), 4),
               "utilisation_if_only_gemms_took_time": round(flops / gemm_s / 1e12 / PEAK_TFLOPS, 4)}
        rows[f"{dtype}_{budget // 1024}k"] = row
        print(dtype, budget, {k: v for k, v in row.items() if k != "profile"}, kinds, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="where throughput.py's random v2-m3 is (built if absent)")
    ap.add_argument("--pairs", type=int, default=4000, help="pairs of throughput.py's mix")
    ap.add_argument("--dtypes", default="fp16,bf16", help="comma-separated")
    ap.add_argument("--budgets", default="32768,65536", help="tokens per batch, comma-separated")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    arch = tp.SIZES["v2m3"]
    hidden = arch["hidden"]
    words, pairs = tp.benchmark_mix(args.pairs)
    path = Path(args.model_dir)
    if not (path / "config.json").exists():
        build_random_reranker(path, tokenizer=tp.build_tokenizer(words), **arch)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "pairs": len(pairs), "runs": {}}
    print(out, flush=True)
    for dtype in args.dtypes.split(","):  # fp16, bf16
        out["runs"].update(measure(path, tokenizer, pairs, dtype, [int(b) for b in args.budgets.split(",")]))
        out[f"plain_gemms_{dtype}_32k"] = plain_gemms(DTYPES[dtype], 32768, hidden, arch["intermediate"])
        print("plain", dtype, out[f"plain_gemms_{dtype}_32k"], flush=True)
        torch.cuda.empty_cache()
    tp.emit(out, args.json)


if __name__ == "__main__":
    main()
