"""Does tokenisation scale with concurrent callers on a many-core host? (issue 7: what feeds several GPUs)

Times, on multi_gpu.py's 4,000 pairs with its tokenizer: one ``encode_batch`` call over all passages, the same split
across 2 and 4 threads each with its own copy of the Rust tokenizer, crossrank's full ``PairEncoder.encode``, and one
passage at a time; then one call and 2 threads on throughput.py's texts and tokenizer.

    TOKENIZERS_PARALLELISM=true PYTHONPATH=src python benchmarks/tokenize_probe.py [out.json]

Also the share of ``PairEncoder.encode``'s time during which it holds the interpreter lock (what the GPU workers'
launches wait for), and a profile of it, on both mixes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from tokenizers import Tokenizer
from transformers import AutoTokenizer

import multi_gpu as mg
import throughput as tp
from crossrank.core.tokenize import PairEncoder
from crossrank.testing import build_random_reranker


def threaded(core: Any, texts: list[str], n: int) -> float:
    clones = [Tokenizer.from_str(core.to_str()) for _ in range(n)]
    for c in clones:
        c.enable_truncation(512)
    threads = [threading.Thread(target=lambda c=c, i=i: c.encode_batch(texts[i::n], add_special_tokens=False))
               for i, c in enumerate(clones)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def gil_held(fn: Any) -> dict[str, float]:
    """Wall time of ``fn()`` and the share of it during which it held the interpreter lock, read off a thread that
    counts while ``fn`` runs: its counting rate against its rate alone is the share of time the lock was free."""
    count, stop = [0], threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    def rate(seconds: float) -> float:
        count[0] = 0
        stop.clear()
        t = threading.Thread(target=spin)
        started = time.perf_counter()
        t.start()
        time.sleep(seconds)
        stop.set()
        t.join()
        return count[0] / (time.perf_counter() - started)

    alone = rate(0.3)
    count[0] = 0
    stop.clear()
    t = threading.Thread(target=spin)
    t.start()
    started = time.perf_counter()
    fn()
    wall = time.perf_counter() - started
    stop.set()
    t.join()
    free = min(1.0, count[0] / wall / alone)
    return {"wall_s": wall, "gil_held_share": 1.0 - free}


def profile(fn: Any, top: int = 12) -> list[str]:
    """cProfile of ``fn()``: the ``top`` functions by own time, as text lines."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.runcall(fn)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return [line for line in out.getvalue().splitlines() if line.strip()][-top:]


def main() -> None:
    res: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        path = build_random_reranker(Path(tmp) / "m", layers=1, hidden=32, heads=2)
        tok = AutoTokenizer.from_pretrained(path)
    pairs = mg.make_pairs(4000)
    passages = [p for _, p in pairs]
    core = tok._tokenizer
    core.enable_truncation(512)
    core.encode_batch(passages[:50], add_special_tokens=False)
    started = time.perf_counter()
    encoded = core.encode_batch(passages, add_special_tokens=False)
    res["multi_gpu_mix_one_call_s"] = time.perf_counter() - started
    res["multi_gpu_mix_truncated_share"] = sum(len(e.ids) >= 512 for e in encoded) / len(encoded)
    for n in (2, 4):
        res[f"multi_gpu_mix_{n}_threads_s"] = threaded(core, passages, n)
    enc = PairEncoder(tok, max_length=512)
    enc.encode(pairs[:50])
    started = time.perf_counter()
    enc.encode(pairs)
    res["multi_gpu_mix_pair_encoder_s"] = time.perf_counter() - started
    res["multi_gpu_mix_pair_encoder_gil"] = gil_held(lambda: enc.encode(pairs))
    res["multi_gpu_mix_pair_encoder_profile"] = profile(lambda: enc.encode(pairs))
    core.enable_truncation(512)
    started = time.perf_counter()
    for p in passages[:300]:
        core.encode(p, add_special_tokens=False)
    res["multi_gpu_mix_one_passage_ms"] = (time.perf_counter() - started) / 300 * 1000
    words, tp_pairs = tp.benchmark_mix(4000)
    texts = [p for _, p in tp_pairs]
    tok2 = tp.build_tokenizer(words)
    enc2 = PairEncoder(tok2, max_length=512)
    enc2.encode(tp_pairs[:50])
    res["throughput_mix_pair_encoder_gil"] = gil_held(lambda: enc2.encode(tp_pairs))
    res["throughput_mix_pair_encoder_profile"] = profile(lambda: enc2.encode(tp_pairs))
    core2 = tok2._tokenizer
    core2.enable_truncation(512)
    core2.encode_batch(texts[:50], add_special_tokens=False)
    started = time.perf_counter()
    core2.encode_batch(texts, add_special_tokens=False)
    res["throughput_mix_one_call_s"] = time.perf_counter() - started
    res["throughput_mix_2_threads_s"] = threaded(core2, texts, 2)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}, indent=1))
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
