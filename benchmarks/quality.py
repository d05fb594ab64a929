"""How far a reduced precision moves scores from fp32's, on random models with outlier channels: the CPU's bf16 and
int8, a GPU's fp16 and bf16.

Random weights alone would hide what quantisation breaks, so the models get what trained transformers have: a few
residual channels with LayerNorm gains 20x the rest (``--outlier-channels``), and a classifier head whose logits spread
out (``--head-std``). For each model size, fp32 and each dtype score the same generated queries (English, Chinese,
emoji), and :func:`crossrank.eval.quality.score_agreement` reports max and p99 |Δlogit| relative to each query's fp32
spread, Spearman per query and the overlap of the top 10. Real weights and real data decide in the end:
``crossrank eval DATASET --compare-dtype int8``.

    PYTHONPATH=src python benchmarks/quality.py --sizes small,minilm,base,v2m3 --json quality.json
    PYTHONPATH=src python benchmarks/quality.py --device cuda --dtypes fp16,bf16 --sizes base,v2m3 --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import throughput as tp
from crossrank.eval.quality import compare_dtypes, generated_queries
from crossrank.testing import build_random_reranker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,minilm,base", help=f"comma separated, of {', '.join(tp.SIZES)}")
    ap.add_argument("--device", default="cpu", help="cpu or cuda; fp32 on the same device is the reference")
    ap.add_argument("--dtypes", default="bf16,int8", help="comma separated (fp16,bf16 on a GPU)")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--passages", type=int, default=30, help="passages a query")
    ap.add_argument("--outlier-channels", type=int, default=4)
    ap.add_argument("--outlier-scale", type=float, default=20.0)
    ap.add_argument("--head-std", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-dir", default=None, help="where to build (and reuse) the models")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    root = Path(args.model_dir or tempfile.mkdtemp())
    queries = generated_queries(args.queries, args.passages, seed=args.seed)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "cpu": tp.cpu_name(),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(args.device),
        "queries": args.queries, "passages_per_query": args.passages, "outlier_channels": args.outlier_channels,
        "outlier_scale": args.outlier_scale, "head_std": args.head_std, "seed": args.seed, "sizes": {},
    }
    for size in args.sizes.split(","):
        arch = tp.SIZES[size]
        path = root / f"outliers-{size}-{args.seed}"
        if not (path / "config.json").exists():
            build_random_reranker(path, seed=args.seed, outlier_channels=args.outlier_channels,
                                  outlier_scale=args.outlier_scale, head_std=args.head_std, **arch)
        agreement = compare_dtypes(path, queries, args.dtypes.split(","), device=args.device)
        result["sizes"][size] = {"arch": arch, **{d: a.to_dict() for d, a in agreement.items()}}
        print(size, json.dumps(result["sizes"][size]), flush=True)
    tp.emit(result, args.json)


if __name__ == "__main__":
    main()
