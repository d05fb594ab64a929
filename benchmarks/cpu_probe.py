"""Where crossrank's time goes on the CPU (issue 6's CPU target), on throughput.py's 200 pairs and MiniLM-sized model.

In one process, taking turns over ``--rounds`` rounds: ``Reranker.score`` with the tokenizer in a thread beside the
model (as shipped) or in the calling thread, each with and without the tokenizer's own threads
(``TOKENIZERS_PARALLELISM``), and the model alone on pre-tokenised pairs. Then a torch.profiler table of one
model-only pass, and lone GEMMs of the model's shapes through oneDNN and MKL (what this machine gives a linear layer).

    PYTHONPATH=src python benchmarks/cpu_probe.py --model-dir /tmp/cpufinal [--rounds 4] [--json out.json]

``--model-dir`` is a folder where throughput.py built its MiniLM-sized model (``--size minilm --model-dir DIR``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import throughput as tp
from crossrank import Reranker
from crossrank.core.tokenize import EncodedPair
from crossrank.reranker import Reranker as RerankerClass
from crossrank.runtime.scoring import run_batches

GEMM_SHAPES = [(2048, 384, 1152), (2048, 384, 384), (2048, 384, 1536), (2048, 1536, 384)]
"""(rows, in, out) of the MiniLM-sized model's linears at the CPU's default budget: QKV, output, up, down."""


def _calling_thread_slices(self: Reranker, pairs: Sequence[tuple[str, str]], bounds: Sequence[tuple[int, int]],
                           mode: str) -> Generator[list[EncodedPair], None, None]:
    """``Reranker._encoded_slices`` without the tokenizer thread: each slice tokenised when the caller asks for it."""
    for start, end in bounds:
        yield self.encode(pairs[start:end], mode)


def gemm_rates() -> dict[str, float]:
    """GFLOP/s of a lone linear of each shape, oneDNN (as the packed backend runs it on CPU) and MKL (F.linear)."""
    rates = {}
    for rows, k, n in GEMM_SHAPES:
        x, w, b = torch.randn(rows, k), torch.randn(n, k), torch.randn(n)
        fns: dict[str, Callable[[], torch.Tensor]] = {
            "onednn": lambda x=x, w=w, b=b: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""),
            "mkl": lambda x=x, w=w, b=b: torch.nn.functional.linear(x, w, b),
        }
        for name, fn in fns.items():
            for _ in range(3):
                fn()
            start = time.perf_counter()
            for _ in range(10):
                fn()
            rates[f"{name} {rows}x{k}->{n}"] = round(2 * rows * k * n * 10 / (time.perf_counter() - start) / 1e9, 1)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    _, pairs = tp.benchmark_mix(256, 100)
    reranker = Reranker(str(Path(args.model_dir) / "random-minilm"), device="cpu")
    shipped = RerankerClass._encoded_slices
    encoded = reranker.encode(pairs)
    budget = reranker.settings.max_batch_tokens

    def variant(threaded: bool, parallel: bool) -> Callable[[], Any]:
        def run() -> Any:
            os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
            RerankerClass._encoded_slices = shipped if threaded else _calling_thread_slices  # type: ignore[method-assign]
            try:
                return reranker.score(pairs)
            finally:
                RerankerClass._encoded_slices = shipped  # type: ignore[method-assign]
        return run

    runs: dict[str, Callable[[], Any]] = {
        "thread, tokenizer threads": variant(True, True), "thread, one tokenizer thread": variant(True, False),
        "calling thread, tokenizer threads": variant(False, True),
        "calling thread, one tokenizer thread": variant(False, False),
        "model only": lambda: run_batches(reranker.backend, encoded, budget),
    }
    reranker.score(pairs[:64])
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(round(time.perf_counter() - start, 3))
        print({name: t[-1] for name, t in times.items()}, flush=True)
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
                              "threads": torch.get_num_threads(), "budget": budget, "seconds": times,
                              "median_s": {name: statistics.median(t) for name, t in times.items()}}

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_batches(reranker.backend, encoded, budget)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    result["profile_share"] = {e.key: round(e.self_cpu_time_total / total, 4) for e in ops[:8]}
    # The linears' FLOPs: every layer's QKV on every token, the rest on every token but in the last layer, where
    # only each sequence's first row goes on (packed backend).
    config = reranker.model.config
    h, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    tokens, rows = sum(len(e) for e in encoded), len(encoded)
    rest = 2 * (h * h + 2 * h * inner)
    flops = layers * tokens * 2 * 3 * h * h + ((layers - 1) * tokens + rows) * rest
    linear_us = sum(e.self_cpu_time_total for e in ops if "linear" in e.key)
    result["linear_gflops"] = round(flops / (linear_us * 1e-6) / 1e9, 1)
    result["gemm_gflops"] = gemm_rates()
    tp.emit(result, args.json)


if __name__ == "__main__":
    main()
