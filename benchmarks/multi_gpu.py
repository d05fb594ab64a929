"""Throughput of one GPU against several GPUs of the same host (crossrank's worker processes), same texts, same scores.

    PYTHONPATH=src python benchmarks/multi_gpu.py --pairs 4000 --out results.json

Builds random weights of bge-reranker-v2-m3's exact shape (no download), scores the same pairs with
``Reranker(device="cuda:0")`` and ``Reranker(devices="0,1")``, and checks the scores are identical. No Ray needed.
On a machine without two GPUs, ``--devices cpu,cpu --small`` runs the same code on a small model (a smoke test).
``--mix throughput`` takes throughput.py's shorter texts. ``--workers threads`` runs the several devices as worker
threads of this process (the service's engine's way) instead of the default worker processes; with threads,
``--tokenizer-processes N`` (0: a thread), ``--ahead`` and ``--child-threads`` vary the tokenizer processes and a
model-only figure is measured too. ``--no-graphs``, ``--in-flight`` and ``--slice-most``/``--slice-growth``/
``--slice-taper`` (the slices of both runs) are for comparisons on one machine.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import crossrank.runtime.processes as processes
import crossrank.runtime.tokenizer_pool as tokenizer_pool
from crossrank import Reranker
from crossrank.runtime.scoring import run_batches
from crossrank.runtime.workers import run_batches_on_pool
from crossrank.testing import build_random_reranker, generated_sentences
from throughput import add_slice_options, apply_slice_options


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Queries and passages of mixed length (passages of ~40 to ~400 words), deterministic."""
    rng = random.Random(seed)
    sentences = list(generated_sentences(2000, seed=seed))
    queries = [rng.choice(sentences) for _ in range(max(1, n // 100))]
    return [(queries[i % len(queries)], " ".join(rng.choice(sentences) for _ in range(rng.randint(3, 30))))
            for i in range(n)]


SMALL_SHAPE: dict[str, int] = {"layers": 2, "hidden": 64, "heads": 2, "intermediate": 128}
"""``--small``: a model that runs anywhere, for smoke tests of the scripts."""


def model_shape(small: bool) -> dict[str, int]:
    """bge-reranker-v2-m3's shape (throughput.py's ``v2m3``), or :data:`SMALL_SHAPE`."""
    import throughput

    return dict(SMALL_SHAPE if small else throughput.SIZES["v2m3"])


def without_graphs(reranker: Reranker) -> Reranker:
    """``--no-graphs``: every backend of ``reranker`` runs op by op (worker threads or one device)."""
    if reranker.processes is not None:
        raise SystemExit("--no-graphs reaches the backends of this process only: add --workers threads")
    for backend in reranker.pool.backends if reranker.pool else [reranker.backend]:
        backend.graphs = False  # type: ignore[attr-defined]
    return reranker


def pairs_and_tokenizer(mix: str, n: int) -> tuple[list[tuple[str, str]], Any]:
    """``mix="multi"``: :func:`make_pairs` and the test tokenizer (None: build_random_reranker trains it);
    ``"throughput"``: exactly throughput.py's pairs and its 32k-piece tokenizer."""
    if mix == "multi":
        return make_pairs(n), None
    import throughput

    words, pairs = throughput.benchmark_mix(n)
    return pairs, throughput.build_tokenizer(words)


def timed(reranker: Reranker, pairs: list[tuple[str, str]], repeats: int) -> tuple[list[float], list[float]]:
    reranker.score(pairs[: min(256, len(pairs))])  # warm-up: CUDA context, kernels, allocator on every device
    seconds: list[float] = []
    scores: list[float] = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        scores = reranker.score(pairs, normalize=False)
        seconds.append(time.perf_counter() - started)
    return scores, seconds


def compute_only(reranker: Reranker, pairs: list[tuple[str, str]], repeats: int) -> float:
    """Pairs/s of the model alone (tokenised once beforehand): what the extra GPUs can speed up."""
    encoded = reranker.encode(pairs)
    budget = reranker.settings.max_batch_tokens
    seconds = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        if reranker.pool is not None:
            run_batches_on_pool(reranker.pool, encoded, budget)
        else:
            run_batches(reranker.backend, encoded, budget)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return len(pairs) / statistics.median(seconds)


def fewest_in_flight(in_flight: list[int], _queued_work: list[int], limit: int) -> int | None:
    """``--pick count``: ``processes.pick_child`` as it was, by slices in flight only."""
    child = min(range(len(in_flight)), key=lambda c: in_flight[c])
    return child if in_flight[child] < limit else None


def add_run_options(parser: argparse.ArgumentParser, mix: str = "multi") -> None:
    """The options the several-GPU scripts share: pairs, devices, calls, model size, texts."""
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--devices", default="0,1", help="the several devices (all | 0,1 | cpu,cpu)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a 2-layer model instead of v2-m3's shape (smoke test)")
    parser.add_argument("--mix", choices=("multi", "throughput"), default=mix,
                        help=f"multi_gpu.py's texts, or throughput.py's texts and tokenizer (default: {mix})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(parser)
    parser.add_argument("--single", default="cuda:0", help="the one-device baseline")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-batch-tokens", type=int, default=0, help="0: the library's default for the device")
    parser.add_argument("--no-graphs", action="store_true",
                        help="the packed backend without CUDA graphs (one device, and several with --workers threads)")
    parser.add_argument("--in-flight", type=int, default=None, help="processes.IN_FLIGHT (slices queued per child)")
    parser.add_argument("--workers", choices=("auto", "threads", "processes"), default="auto",
                        help="the multi-device run's workers (auto: the library's default, processes; only threads "
                             "give a model-only figure)")
    parser.add_argument("--pick", choices=("work", "count"), default="work",
                        help="worker processes: the next slice goes to the child with least work queued (the "
                             "library's), or with fewest slices in flight (before the tenth session)")
    parser.add_argument("--tokenizer-processes", type=int, default=None,
                        help="Reranker(tokenizer_processes=...) of the multi-device run; default: the library's")
    parser.add_argument("--ahead", type=int, default=None, help="tokenizer_pool.AHEAD (slices in flight per child)")
    parser.add_argument("--child-threads", type=int, default=None, help="tokenizer_pool.CHILD_THREADS")
    add_slice_options(parser)
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="keep the random model here and reuse it on later runs (one per --mix and --small)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    def graphs_off(reranker: Reranker) -> Reranker:
        return without_graphs(reranker) if args.no_graphs else reranker

    if args.in_flight is not None:
        processes.IN_FLIGHT = args.in_flight
    if args.pick == "count":
        processes.pick_child = fewest_in_flight
    if args.ahead is not None:
        tokenizer_pool.AHEAD = args.ahead
    tokenizer_pool.CHILD_THREADS = args.child_threads
    slices = apply_slice_options(args)
    pairs, tokenizer = pairs_and_tokenizer(args.mix, args.pairs)
    shape = model_shape(args.small)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = (args.model_dir or Path(tmp)) / f"{'small' if args.small else 'v2m3'}-{args.mix}"
        if not (model_dir / "config.json").exists():
            build_random_reranker(model_dir, tokenizer=tokenizer, **shape)  # type: ignore[arg-type]
        common = dict(dtype=args.dtype, max_length=args.max_length, max_batch_tokens=args.max_batch_tokens)
        one = graphs_off(Reranker(str(model_dir), device=args.single, **common))  # type: ignore[arg-type]
        budget = one.settings.max_batch_tokens
        one_scores, one_seconds = timed(one, pairs, args.repeats)
        one_compute = compute_only(one, pairs, args.repeats)
        one.close()
        many = graphs_off(Reranker(str(model_dir), devices=args.devices,  # type: ignore[arg-type]
                                   tokenizer_processes=args.tokenizer_processes, workers=args.workers, **common))
        workers = many.processes.size if many.processes else many.pool.size if many.pool else 1
        worker_kind = many.describe()["workers"]
        tokenizer_processes = many.tokenizer_pool.size if many.tokenizer_pool else 0
        many_scores, many_seconds = timed(many, pairs, args.repeats)
        many_compute = compute_only(many, pairs, args.repeats) if many.processes is None else None
        many.close()

    one_rate = len(pairs) / statistics.median(one_seconds)
    many_rate = len(pairs) / statistics.median(many_seconds)
    max_diff = max(abs(a - b) for a, b in zip(one_scores, many_scores, strict=True))
    result = {
        "pairs": len(pairs), "mix": args.mix, "graphs": not args.no_graphs, "model_shape": shape, "dtype": args.dtype,
        "max_length": args.max_length, "max_batch_tokens": budget, "slices": slices,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "single": {"device": args.single, "pairs_per_s": round(one_rate, 1), "seconds": one_seconds},
        "multi": {"devices": args.devices, "workers": workers, "worker_kind": worker_kind,
                  "in_flight": processes.IN_FLIGHT, "pick": args.pick,
                  "tokenizer_processes": tokenizer_processes,
                  "ahead": tokenizer_pool.AHEAD, "child_threads": args.child_threads,
                  "pairs_per_s": round(many_rate, 1),
                  "seconds": many_seconds},
        "speedup": round(many_rate / one_rate, 3),
        # Tokenisation runs once on the CPU either way; the model-only figures show what the extra GPUs give.
        "compute_only_pairs_per_s": {"single": round(one_compute, 1),
                                     "multi": round(many_compute, 1) if many_compute else None},
        "compute_only_speedup": round(many_compute / one_compute, 3) if many_compute else None,
        "scores_identical": one_scores == many_scores,
        "max_abs_logit_diff": max_diff,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0 if result["scores_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
