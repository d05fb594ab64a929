"""Issue 6: how close the packed backend's model-only pass is to what the GPU's GEMMs allow, at crossrank's defaults.

For fp16 and bf16 and the token budgets 32,768 (the default) and 65,536, on throughput.py's random v2-m3 and text mix:
- model only (pre-tokenised; ``scoring.run_batches``, best of 3): pairs/s and utilisation of 989 TFLOP/s, counted as
  REFERENCE.md counts (throughput.model_flops: linear layers + attention, real tokens only);
- a profile of one such pass: GPU time by kind of kernel, the rate the model's GEMMs and attention reach inside it,
  and the utilisation the pass would have if everything but its GEMMs took no time (the ceiling of this design);
- the same GEMMs alone (the fused QKV, output, up and down projections with their biases, 32,768 x 1,024 tokens).

    PYTHONPATH=src python benchmarks/ceiling_probe.py --model-dir /tmp/bm/random-v2m3 --json ceiling.json
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import throughput as tp
from crossrank import Reranker
from crossrank.model.devices import DTYPES
from crossrank.runtime.scoring import run_batches
from fused_probe import gpu_ms, profile, v2m3_model_and_pairs

PEAK_TFLOPS = tp.PEAK_TFLOPS["cuda"]


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


def measure(path: Path, pairs: list[tuple[str, str]], dtype: str, budgets: list[int]) -> dict[str, Any]:
    """Model only and its profile at each budget, crossrank's defaults otherwise."""
    arch = tp.SIZES["v2m3"]
    layers, hidden = arch["layers"], arch["hidden"]
    r = Reranker(str(path), device="cuda", dtype=dtype)
    encoded = r.encoder.encode(pairs)
    lengths = [len(e) for e in encoded]
    flops = tp.model_flops(lengths, layers, hidden)
    gemm_flops = tp.linear_flops(lengths, layers, hidden)
    rows: dict[str, Any] = {}
    for budget in budgets:
        run = functools.partial(run_batches, r.backend, encoded, budget)
        run()
        secs = min(tp.timed("cuda", run)[1] for _ in range(3))
        prof = profile(run)
        kinds = prof["by_kind_ms"]
        gemm_s, attn_s = kinds.get("gemm", 0.0) / 1000, kinds.get("attention", 0.0) / 1000
        row = {"backend": r.backend.name, "pairs_per_s": round(len(pairs) / secs, 1),
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
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--dtypes", default="fp16,bf16")
    ap.add_argument("--budgets", default="32768,65536")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    arch = tp.SIZES["v2m3"]
    hidden = arch["hidden"]
    path, _, pairs = v2m3_model_and_pairs(args.model_dir, args.pairs)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "pairs": len(pairs), "runs": {}}
    print(out, flush=True)
    for dtype in args.dtypes.split(","):  # fp16, bf16
        out["runs"].update(measure(path, pairs, dtype, [int(b) for b in args.budgets.split(",")]))
        out[f"plain_gemms_{dtype}_32k"] = plain_gemms(DTYPES[dtype], 32768, hidden, arch["intermediate"])
        print("plain", dtype, out[f"plain_gemms_{dtype}_32k"], flush=True)
        torch.cuda.empty_cache()
    tp.emit(out, args.json)


if __name__ == "__main__":
    main()
