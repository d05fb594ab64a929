"""Issue 7: how long the host takes to queue one batch on the GPU, alone and beside a busy Python thread.

Two GPUs over one falls short of 2x on the host side: in multi_gpu_timeline.py's spans a worker's launch of a batch
can last as long as the GPU's run of it. This measures the launch itself on one GPU with throughput.py's v2-m3 and
texts: each batch of the default budget is queued with ``forward_device`` once the GPU is idle (so nothing waits on a
full queue), and timed on the host and, through CUDA events, on the GPU. Then the same with one more Python thread
running pure-Python work (as the caller and a second worker do), for the interpreter lock's share.

    PYTHONPATH=src python benchmarks/launch_probe.py --model-dir /tmp/bm/random-v2m3 --json launch.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import throughput as tp
from crossrank import Reranker
from crossrank.batching import pack_batches
from fused_probe import v2m3_model_and_pairs


def busy(stop: threading.Event) -> None:
    """Pure-Python work that wants the interpreter lock all the time."""
    while not stop.is_set():
        sum(i * i for i in range(2000))


def launches(backend: Any, batches: list[list[Any]]) -> list[dict[str, float]]:
    rows = []
    for batch in batches:
        torch.cuda.synchronize()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        t0 = time.perf_counter()
        backend.forward_device(batch)
        host = time.perf_counter() - t0
        end.record()
        torch.cuda.synchronize()
        rows.append({"tokens": sum(len(e) for e in batch), "host_ms": 1000 * host, "gpu_ms": begin.elapsed_time(end)})
    return rows


def summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    big = [r for r in rows if r["tokens"] > 8192]  # CUDA graphs take batches up to 8,192 tokens
    small = [r for r in rows if r["tokens"] <= 8192]

    def med(rs: list[dict[str, float]], key: str) -> float | None:
        return round(statistics.median(r[key] for r in rs), 2) if rs else None

    return {"batches": len(rows), "big": len(big), "big_host_ms": med(big, "host_ms"), "big_gpu_ms": med(big, "gpu_ms"),
            "small": len(small), "small_host_ms": med(small, "host_ms"), "small_gpu_ms": med(small, "gpu_ms"),
            "host_s": round(sum(r["host_ms"] for r in rows) / 1000, 4),
            "gpu_s": round(sum(r["gpu_ms"] for r in rows) / 1000, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="where throughput.py's random v2-m3 is (built if absent)")
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    path, _, pairs = v2m3_model_and_pairs(args.model_dir, args.pairs)
    r = Reranker(str(path), device="cuda")
    encoded = r.encoder.encode(pairs)
    plan = pack_batches([len(e) for e in encoded], r.settings.max_batch_tokens, padded=False)
    batches = [[encoded[i] for i in b] for b in plan]
    launches(r.backend, batches)  # warm-up: kernels compiled, graphs captured
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "switch_interval_s": sys.getswitchinterval()}
    for rnd in range(2):
        out[f"alone_{rnd}"] = summary(launches(r.backend, batches))
        stop = threading.Event()
        thread = threading.Thread(target=busy, args=(stop,), daemon=True)
        thread.start()
        try:
            out[f"beside_busy_thread_{rnd}"] = summary(launches(r.backend, batches))
        finally:
            stop.set()
            thread.join()
        print(rnd, out[f"alone_{rnd}"], out[f"beside_busy_thread_{rnd}"], flush=True)
    tp.emit(out, args.json)


if __name__ == "__main__":
    main()
