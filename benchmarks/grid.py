"""The CPU grid of ``throughput.py --modes grid``: model sizes x passage lengths, crossrank against FlagReranker and
CrossEncoder, end to end (text in, logits out).

For each size a random model (``throughput.SIZES``) is loaded once per runner; for each passage length one query's
passages of about that many tokens are scored by every runner in turn, one timed run each per round, so that a VM whose
speed drifts slows every runner of a round alike; the median of the rounds is reported. Pair counts shrink with the
model's cost, so that the whole grid takes about 15 minutes on 2 cores.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import throughput as tp

GRID_SIZES = ("small", "minilm", "base", "v2m3")
GRID_TOKENS = (50, 200, 500)
GRID_PAIRS = {
    "small": (256, 256, 256),
    "minilm": (64, 64, 32),
    "base": (32, 16, 8),
    "v2m3": (16, 8, 4),
}
"""Pairs a cell, for each of :data:`GRID_TOKENS`."""
REFERENCES = ("flag", "ce32")


def passages_of(tokenizer: Any, words: Sequence[str], tokens: int, n: int, seed: int) -> list[tuple[str, str]]:
    """One query and ``n`` passages whose pairs have about ``tokens`` tokens (median), lengths spread by +-10%."""
    rng = random.Random(seed)
    sample = [tp.random_sentence(rng, words, 100) for _ in range(20)]
    per_word = statistics.mean(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sample) / 100
    query = tp.random_sentence(rng, words, 8)
    query_tokens = len(tokenizer(query, add_special_tokens=False)["input_ids"])
    words_wanted = max(1.0, (tokens - query_tokens - 4) / per_word)
    return [(query, p) for _, p in tp.make_pairs(rng, words, 1, n, words_wanted, 0.1, 10_000)]


def run_cell(calls: dict[str, Callable[[Sequence[tuple[str, str]]], list[float]]], pairs: Sequence[tuple[str, str]],
             rounds: int) -> dict[str, Any]:
    """Every runner of ``calls`` on ``pairs``, one timed run each per round; medians, and crossrank's speed-up over
    the faster reference and its largest logit difference from FlagReranker's."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    scores: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            scores[name] = list(call(pairs))
            times[name].append(time.perf_counter() - start)
    cell: dict[str, Any] = {}
    for name, runs in times.items():
        cell[name] = {"pairs_per_s": round(len(pairs) / statistics.median(runs), 2),
                      "runs_s": [round(t, 3) for t in runs]}
    refs = [r for r in REFERENCES if r in calls]
    if "packed" in calls and refs:
        faster = max(refs, key=lambda r: cell[r]["pairs_per_s"])
        cell["faster_reference"] = faster
        cell["speedup"] = round(cell["packed"]["pairs_per_s"] / cell[faster]["pairs_per_s"], 2)
        # Round by round: each round's crossrank time against the same round's faster reference.
        cell["speedup_by_round"] = [round(f / p, 2) for p, f in zip(times["packed"], times[faster], strict=True)]
    if "packed" in scores and "flag" in scores:
        cell["max_abs_diff_vs_flag"] = max(abs(a - b) for a, b in zip(scores["packed"], scores["flag"], strict=True))
    return cell


def grid(root: Path, tokenizer_dir: Path | None, runners: Sequence[str], rounds: int, budget: int,
         sizes: Sequence[str] = GRID_SIZES) -> dict[str, Any]:
    """The grid over ``sizes`` x :data:`GRID_TOKENS`; models are built under ``root`` (reused when there), all with
    the tokenizer saved in ``tokenizer_dir`` where given, else a new one."""
    from transformers import AutoTokenizer

    from crossrank.testing import build_random_reranker

    words, _ = tp.benchmark_mix(1)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir else tp.build_tokenizer(words)
    cells: list[dict[str, Any]] = []
    for size in sizes:
        path = root / f"random-{size}"
        if not (path / "config.json").exists():
            build_random_reranker(path, tokenizer=tok, **tp.SIZES[size])
        cell_pairs = [passages_of(tok, words, t, n, seed=i) for i, (t, n) in
                      enumerate(zip(GRID_TOKENS, GRID_PAIRS[size], strict=True))]
        calls = {name: tp.runner_call(name, path, "cpu", "fp32", budget, cell_pairs[0][:4]) for name in runners}
        for tokens, pairs in zip(GRID_TOKENS, cell_pairs, strict=True):
            lengths = [len(x) for x in tok([q for q, _ in pairs], [p for _, p in pairs], truncation="only_second",
                                           max_length=512)["input_ids"]]
            cell = {"size": size, "target_tokens": tokens, "pairs": len(pairs),
                    "median_tokens": statistics.median(lengths), "rounds": rounds, **run_cell(calls, pairs, rounds)}
            print("grid", cell, flush=True)
            cells.append(cell)
        del calls
    speedups = [c["speedup"] for c in cells if "speedup" in c]
    summary = {"min_speedup": min(speedups), "median_speedup": statistics.median(speedups)} if speedups else {}
    return {"sizes": {s: tp.SIZES[s] for s in sizes}, "tokens": list(GRID_TOKENS), "cells": cells, **summary}
