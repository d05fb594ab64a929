"""Issue 7: how long the host takes to queue one batch on the GPU, alone and beside a busy Python thread.

Two GPUs over one falls short of 2x on the host side: in multi_gpu_timeline.py's spans a worker's launch of a batch
can last as long as the GPU's run of it. This measures the launch itself on one GPU with throughput.py's v2-m3 and
texts: each batch of the default budget is queued with ``forward_device`` once the GPU is idle (so nothing waits on a
full queue), and timed on the host and, through CUDA events, on the GPU. Then the same with one more Python thread
running pure-Python work (as the caller and a second worker do), for the interpreter lock's share: one that works
1 ms and sleeps 1 ms, one that never sleeps. ``--graph-steps 0,256`` compares the library's defaults with every
batch replayed as a CUDA graph, its tokens padded to a multiple of 256.

    PYTHONPATH=src python benchmarks/launch_probe.py --model-dir /tmp/bm/random-v2m3 --graph-steps 0,256,1024 \
        --json launch.json
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
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
from crossrank.backends import packed
from crossrank.core.batching import pack_batches
from fused_probe import v2m3_model_and_pairs


def busy(stop: threading.Event, work_s: float, rest_s: float) -> None:
    """Pure-Python work that wants the interpreter lock for ``work_s`` at a time, then sleeps ``rest_s`` (0: never)."""
    while not stop.is_set():
        until = time.perf_counter() + work_s
        while time.perf_counter() < until:
            sum(i * i for i in range(200))
        if rest_s:
            time.sleep(rest_s)


def beside(thread_args: tuple[float, float], run: Any) -> Any:
    """``run()`` while a :func:`busy` thread runs."""
    stop = threading.Event()
    thread = threading.Thread(target=busy, args=(stop, *thread_args), daemon=True)
    thread.start()
    try:
        return run()
    finally:
        stop.set()
        thread.join()


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


def host_profile(backend: Any, batch: list[Any], repeats: int = 5) -> list[str]:
    """Where the host's time goes when queueing ``batch``: the 25 functions with the most own time (cProfile, over
    ``repeats`` launches, the GPU idle before each)."""
    prof = cProfile.Profile()
    for _ in range(repeats):
        torch.cuda.synchronize()
        prof.enable()
        backend.forward_device(batch)
        prof.disable()
    torch.cuda.synchronize()
    stats = pstats.Stats(prof).sort_stats("tottime")
    rows = []
    for (file, line, name), (_, calls, own, total, _) in list(stats.stats.items()):  # type: ignore[attr-defined]
        rows.append((own, f"{own / repeats * 1000:7.3f} ms own {total / repeats * 1000:7.3f} ms total "
                          f"{calls // repeats:5d} calls {Path(file).name}:{line}({name})"))
    return [text for _, text in sorted(rows, reverse=True)[:25]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="where throughput.py's random v2-m3 is (built if absent)")
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--graph-steps", type=lambda v: [int(x) for x in v.split(",")], default=[0],
                    help="0: the library's defaults; N: every batch a CUDA graph, tokens padded to a multiple of N")
    args = ap.parse_args()
    defaults = (packed.GRAPH_MAX_TOKENS, packed.GRAPH_TOKEN_STEP, packed.GRAPH_MOST)
    path, _, pairs = v2m3_model_and_pairs(args.model_dir, args.pairs)
    r = Reranker(str(path), device="cuda")
    encoded = r.encoder.encode(pairs)
    plan = pack_batches([len(e) for e in encoded], r.settings.max_batch_tokens, padded=False)
    batches = [[encoded[i] for i in b] for b in plan]
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "switch_interval_s": sys.getswitchinterval()}
    for step in args.graph_steps:
        # 0: the library's defaults (graphs up to GRAPH_MAX_TOKENS only); else every batch as a graph, padded to step
        name = "default" if step == 0 else f"graphs_step_{step}"
        packed.GRAPH_MAX_TOKENS = defaults[0] if step == 0 else 1 << 30
        packed.GRAPH_TOKEN_STEP = defaults[1] if step == 0 else step
        packed.GRAPH_MOST = defaults[2] if step == 0 else 10_000
        t0 = time.perf_counter()
        launches(r.backend, batches)  # warm-up: kernels compiled, graphs captured
        res: dict[str, Any] = {"warm_up_s": round(time.perf_counter() - t0, 3)}
        if step == 0:
            biggest = max(batches, key=lambda b: sum(len(e) for e in b))
            res["profile_biggest_batch"] = host_profile(r.backend, biggest)
            print("\n".join(res["profile_biggest_batch"]), flush=True)
        for rnd in range(2):
            res[f"alone_{rnd}"] = summary(launches(r.backend, batches))
            bursty = beside((0.001, 0.001), lambda: launches(r.backend, batches[:6]))  # 1 ms on, 1 ms off
            res[f"beside_bursty_thread_{rnd}"] = summary(bursty)
            res[f"beside_busy_thread_{rnd}"] = summary(beside((0.001, 0), lambda: launches(r.backend, batches[:2])))
            print(name, rnd, {k: v for k, v in res.items() if k.endswith(str(rnd))}, flush=True)
        out[name] = res
    tp.emit(out, args.json)


if __name__ == "__main__":
    main()
