"""Where the time of one end-to-end call on several GPUs goes: tokenisation slices, kernel launches, GPU busy and idle.

    PYTHONPATH=src python benchmarks/multi_gpu_timeline.py --pairs 4000 --out timeline.json

Scores multi_gpu.py's pairs with ``Reranker(devices=..., workers="threads")`` after a warm-up, recording how long the
caller waited for each tokenised slice (in a thread or in the tokenizer processes), the wall-clock span of each
batch's launch (per worker thread), and CUDA events around each batch on its GPU. GPU times are placed on the wall
clock through one event recorded on each device at the start of the call. Prints the totals: how long each GPU was
busy, idle before its first batch, idle between batches and idle at the end, and the waits for slices. Needs CUDA
(``--devices cpu,cpu --small`` runs the bookkeeping without GPU events).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import multi_gpu as mg
import throughput
from crossrank import Reranker
from crossrank.backends.base import Backend
from crossrank.core.tokenize import EncodedPair
from crossrank.runtime import workers
from crossrank.testing import build_random_reranker


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.t0 = 0.0
        self.refs: dict[str, torch.cuda.Event] = {}
        self.slices: list[tuple[float, float, int]] = []
        self.batches: list[dict[str, Any]] = []
        self.submits: list[tuple[float, float]] = []

    def start(self, devices: Sequence[torch.device]) -> None:
        for d in devices:
            if d.type == "cuda":
                torch.cuda.synchronize(d)
        self.t0 = time.perf_counter()
        self.refs = {}
        for d in devices:
            if d.type == "cuda":
                with torch.cuda.device(d):
                    ev = torch.cuda.Event(enable_timing=True)
                    ev.record()
                    self.refs[str(d)] = ev
        self.slices.clear()
        self.batches.clear()
        self.submits.clear()

    def now(self) -> float:
        return time.perf_counter() - self.t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mg.add_run_options(parser)
    parser.add_argument("--no-graphs", action="store_true", help="the packed backend without CUDA graphs")
    parser.add_argument("--tokenizer-processes", type=int, default=None, help="Reranker(tokenizer_processes=...)")
    throughput.add_slice_options(parser)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    slices = throughput.apply_slice_options(args)

    rec = Recorder()
    original_launch = workers.launch_batch

    def launch(backend: Backend, batch: Sequence[EncodedPair]) -> list[torch.Tensor]:
        cuda = backend.device.type == "cuda"
        begin_wall = rec.now()
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
        parts = original_launch(backend, batch)
        if cuda:
            end.record()
        row: dict[str, Any] = {"device": str(backend.device), "pairs": len(batch), "tokens": sum(len(e) for e in batch),
                               "launch": (begin_wall, rec.now())}
        if cuda:
            row["events"] = (begin, end)
        with rec.lock:
            rec.batches.append(row)
        return parts

    workers.launch_batch = launch  # type: ignore[assignment]

    pairs, tokenizer = mg.pairs_and_tokenizer(args.mix, args.pairs)
    shape = mg.model_shape(args.small)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_random_reranker(Path(tmp) / "m", tokenizer=tokenizer, **shape)  # type: ignore[arg-type]
        reranker = Reranker(str(model_dir), devices=args.devices, tokenizer_processes=args.tokenizer_processes,
                            workers="threads")
        if args.no_graphs:
            mg.without_graphs(reranker)
        original_slices = reranker._encoded_slices

        def encoded_slices(*a: Any) -> Iterator[list[EncodedPair]]:
            """Each slice's span: from when the caller asked for it to when it was handed over (in a thread of this
            process or in the tokenizer processes, the wait is what the GPUs may idle for)."""
            asked = rec.now()
            for part in original_slices(*a):
                rec.slices.append((asked, rec.now(), len(part)))
                yield part
                asked = rec.now()

        reranker._encoded_slices = encoded_slices  # type: ignore[method-assign]
        if reranker.pool is not None:
            original_submit = reranker.pool.submit

            def submit(work: Any) -> Any:
                asked = rec.now()
                future = original_submit(work)
                rec.submits.append((asked, rec.now()))
                return future

            reranker.pool.submit = submit  # type: ignore[method-assign]
        devices = [b.device for b in reranker.pool.backends] if reranker.pool else [reranker.device]
        reranker.score(pairs[:256])
        for _ in range(args.repeats):
            rec.start(devices)
            reranker.score(pairs, normalize=False)
            wall = rec.now()
            for d in devices:
                if d.type == "cuda":
                    torch.cuda.synchronize(d)
            runs.append(summarise(rec, devices, wall, len(pairs)))
        reranker.close()
    result = {"pairs": len(pairs), "mix": args.mix, "devices": args.devices, "cpus": os.cpu_count(),
              "graphs": not args.no_graphs, "tokenizer_processes": args.tokenizer_processes, "slices": slices,
              "runs": runs}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


def summarise(rec: Recorder, devices: Sequence[torch.device], wall: float, n: int) -> dict[str, Any]:
    waited = sum(e - b for b, e, _ in rec.slices)
    out: dict[str, Any] = {
        "wall_s": round(wall, 4), "pairs_per_s": round(n / wall, 1),
        "waited_for_slices_s": round(waited, 4), "slices": len(rec.slices),
        "slice_waits_ms": [round((e - b) * 1e3, 1) for b, e, _ in rec.slices],
        "first_slice_done_s": round(rec.slices[0][1], 4) if rec.slices else None,
        "last_slice_done_s": round(rec.slices[-1][1], 4) if rec.slices else None,
        "per_device": {},
        # Wall-clock detail in ms: [asked, done, pairs] per slice, [asked, granted] per submit to the worker pool.
        "slice_spans_ms": [[round(b * 1e3, 1), round(e * 1e3, 1), k] for b, e, k in rec.slices],
        "submit_spans_ms": [[round(b * 1e3, 1), round(e * 1e3, 1)] for b, e in rec.submits],
    }
    for d in devices:
        rows = [r for r in rec.batches if r["device"] == str(d)]
        launch = sum(r["launch"][1] - r["launch"][0] for r in rows)
        entry: dict[str, Any] = {"batches": len(rows), "pairs": sum(r["pairs"] for r in rows),
                                 "tokens": sum(r["tokens"] for r in rows), "launch_host_s": round(launch, 4)}
        ref = rec.refs.get(str(d))
        if ref is not None and rows:
            spans = sorted((ref.elapsed_time(r["events"][0]) / 1e3, ref.elapsed_time(r["events"][1]) / 1e3)
                           for r in rows)
            # Per batch, in ms: launch begin and end on the host, GPU begin and end, tokens.
            entry["batch_spans_ms"] = sorted(
                [round(r["launch"][0] * 1e3, 1), round(r["launch"][1] * 1e3, 1),
                 round(ref.elapsed_time(r["events"][0]), 1), round(ref.elapsed_time(r["events"][1]), 1), r["tokens"]]
                for r in rows)
            busy = sum(e - b for b, e in spans)
            gaps = [spans[k + 1][0] - spans[k][1] for k in range(len(spans) - 1)]
            entry.update(busy_s=round(busy, 4), first_start_s=round(spans[0][0], 4), last_end_s=round(spans[-1][1], 4),
                         idle_between_s=round(sum(g for g in gaps if g > 0), 4),
                         idle_after_s=round(wall - spans[-1][1], 4),
                         largest_gaps_ms=sorted((round(g * 1e3, 2) for g in gaps), reverse=True)[:5])
        out["per_device"][str(d)] = entry
    return out


if __name__ == "__main__":
    sys.exit(main())
