"""Throughput of one GPU against several GPUs of the same host, on the same texts, with identical scores.

    PYTHONPATH=src python benchmarks/multi_gpu.py --pairs 4000 --mix throughput --out results.json

Builds random weights of bge-reranker-v2-m3's exact shape (no download), scores the same pairs end to end (text in,
scores out) with ``Reranker(device="cuda:0")`` and then ``Reranker(devices="0,1")``, and reports pairs/s of each (the
median of ``--repeats`` timed calls after a warm-up), the speed-up, and whether the scores are identical (the exit
status is 1 if not). ``--mix throughput`` takes throughput.py's texts and tokenizer (~205 tokens a pair), the default
``multi`` longer texts (~290 tokens). On a machine without two GPUs, ``--devices cpu,cpu --single cpu --small`` runs
the same code on a small model (a smoke test). No Ray needed.
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

from crossrank import Reranker
from crossrank.testing import build_random_reranker, generated_sentences


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


def pairs_and_tokenizer(mix: str, n: int) -> tuple[list[tuple[str, str]], Any]:
    """``mix="multi"``: :func:`make_pairs` and the test tokenizer (None: build_random_reranker trains it);
    ``"throughput"``: exactly throughput.py's pairs and its 32k-piece tokenizer."""
    if mix == "multi":
        return make_pairs(n), None
    import throughput

    words, pairs = throughput.benchmark_mix(n)
    return pairs, throughput.build_tokenizer(words)


def timed(reranker: Reranker, pairs: list[tuple[str, str]], repeats: int) -> tuple[list[float], list[float]]:
    """The logits of the last of ``repeats`` timed calls over ``pairs``, and every call's seconds."""
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--devices", default="0,1", help="the several devices (all | 0,1 | cpu,cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per run; the median is reported")
    parser.add_argument("--small", action="store_true", help="a 2-layer model instead of v2-m3's shape (smoke test)")
    parser.add_argument("--mix", choices=("multi", "throughput"), default="multi",
                        help="this script's longer texts, or throughput.py's texts and tokenizer")
    parser.add_argument("--single", default="cuda:0", help="the one-device baseline")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-batch-tokens", type=int, default=0, help="0: the library's default for the device")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="keep the random model here and reuse it on later runs (one per --mix and --small)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    pairs, tokenizer = pairs_and_tokenizer(args.mix, args.pairs)
    shape = model_shape(args.small)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = (args.model_dir or Path(tmp)) / f"{'small' if args.small else 'v2m3'}-{args.mix}"
        if not (model_dir / "config.json").exists():
            build_random_reranker(model_dir, tokenizer=tokenizer, **shape)  # type: ignore[arg-type]
        common = dict(dtype=args.dtype, max_length=args.max_length, max_batch_tokens=args.max_batch_tokens)
        one = Reranker(str(model_dir), device=args.single, **common)  # type: ignore[arg-type]
        budget = one.settings.max_batch_tokens
        one_scores, one_seconds = timed(one, pairs, args.repeats)
        one.close()
        many = Reranker(str(model_dir), devices=args.devices, **common)  # type: ignore[arg-type]
        described = many.describe()
        many_scores, many_seconds = timed(many, pairs, args.repeats)
        many.close()

    one_rate = len(pairs) / statistics.median(one_seconds)
    many_rate = len(pairs) / statistics.median(many_seconds)
    max_diff = max(abs(a - b) for a, b in zip(one_scores, many_scores, strict=True))
    result = {
        "pairs": len(pairs), "mix": args.mix, "model_shape": shape, "dtype": args.dtype,
        "max_length": args.max_length, "max_batch_tokens": budget,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "single": {"device": args.single, "pairs_per_s": round(one_rate, 1), "seconds": one_seconds},
        "multi": {"devices": described["devices"], "pairs_per_s": round(many_rate, 1), "seconds": many_seconds},
        "speedup": round(many_rate / one_rate, 3),
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
