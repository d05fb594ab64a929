"""Time ``crossrank eval``'s reranking step per 1,000 pairs: the BM25 top-k candidates of a retrieval benchmark's
queries, scored through :func:`crossrank.eval.rerank.rerank_run` (no cache, so every pair reaches the model).

``--dataset`` is a folder in the BEIR layout or a BEIR name (downloaded once, as ``crossrank eval`` does).
CPU, the tiny test model (2 layers, hidden 32):
    PYTHONPATH=src python benchmarks/eval_speed.py --dataset scifact --device cpu --queries 20 --top-k 50
GPU, v2-m3-shaped random weights (24 layers, hidden 1024; about 2.3 GB written to --model-dir first):
    PYTHONPATH=src python benchmarks/eval_speed.py --dataset scifact --device cuda --shape v2-m3 --top-k 100

Random weights: the timing is real, the ranking is not (no quality figures here).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from crossrank import Reranker
from crossrank.eval.datasets import load_dataset
from crossrank.eval.first_stage import bm25_run
from crossrank.eval.rerank import rerank_run
from crossrank.testing import build_random_reranker

SHAPES = {
    "tiny": {},
    "v2-m3": {"layers": 24, "hidden": 1024, "heads": 16, "intermediate": 4096, "max_positions": 8194},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="scifact", help="a BEIR-layout folder or a BEIR name (default: scifact)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--model-dir", type=Path, default=None, help="where to build (or reuse) the random model")
    parser.add_argument("--queries", type=int, default=20, help="the first N queries of the test split")
    parser.add_argument("--top-k", type=int, default=50, help="BM25 candidates reranked per query")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    data = load_dataset(args.dataset)
    keep = list(data.queries)[: args.queries]
    data = replace(data, queries={q: data.queries[q] for q in keep}, qrels={q: data.qrels[q] for q in keep})
    candidates = bm25_run(data, args.top_k)
    model_dir = args.model_dir or Path(tempfile.mkdtemp()) / f"random-{args.shape}"
    if not (model_dir / "config.json").is_file():
        build_random_reranker(model_dir, **SHAPES[args.shape])  # type: ignore[arg-type]
    reranker = Reranker(str(model_dir), device=args.device, dtype=args.dtype, max_length=args.max_length,
                        max_batch_tokens=args.max_batch_tokens)
    lengths = [len(e) for e in reranker.encode([(data.queries[q], data.corpus[d])
                                                for q, docs in candidates.items() for d in docs])]
    warm = {q: dict(list(docs.items())[:4]) for q, docs in list(candidates.items())[:2]}
    rerank_run(reranker, data, warm)  # first-call costs (allocations, kernels) are not steady state
    timings = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        _, stats = rerank_run(reranker, data, candidates)
        timings.append(time.perf_counter() - began)
    best = min(timings)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": data.name, "device": str(reranker.device), "dtype": reranker.describe()["dtype"],
        "shape": args.shape,
        "machine": platform.processor() or platform.machine(),
        "pairs": stats.pairs, "queries": len(data.queries), "top_k": args.top_k,
        "tokens_per_pair_mean": sum(lengths) / len(lengths), "tokens_per_pair_max": max(lengths),
        "seconds_best": best, "seconds_all": timings,
        "seconds_per_1000_pairs": 1000 * best / stats.pairs, "pairs_per_second": stats.pairs / best,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
