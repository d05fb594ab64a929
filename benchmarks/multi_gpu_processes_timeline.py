"""Where the time of one call on several GPUs goes with worker processes (the library's default), child by child.

    PYTHONPATH=src python benchmarks/multi_gpu_processes_timeline.py --pairs 4000 --mix throughput --out tl.json

Scores multi_gpu.py's pairs with ``Reranker(devices=...)``, whose children run as benchmarks/processes_trace_child.py
(the library's own child, timed). For each call and each child it prints how long its GPU was busy and idle (before
its first batch, between batches, after its last until the call returned), and blames each idle gap between two slices
on the first step of the next slice not done when the GPU went idle: its arrival from the parent (with the parent's
tokenizer processes, the default, that includes their tokenising), its tokenising in the child
(``--tokenizer-processes 0``), or else its launch (the host). Gaps between batches of one slice are the launch's.
Needs CUDA for the GPU figures;
``--devices cpu,cpu --small`` runs the bookkeeping (host spans only) as a smoke test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import crossrank.runtime.processes as processes
import multi_gpu as mg
import throughput
from crossrank import Reranker
from crossrank.testing import build_random_reranker

HERE = Path(__file__).parent
GAP = 0.0005
"""Idle spans shorter than this (seconds) are not blamed on anything."""


class _TracedSubprocess:
    """``crossrank.runtime.processes``' view of :mod:`subprocess`: the children run processes_trace_child.py instead."""

    PIPE = subprocess.PIPE
    TimeoutExpired = subprocess.TimeoutExpired

    def __init__(self, trace_dir: Path) -> None:
        self.env = dict(os.environ, CROSSRANK_TRACE_DIR=str(trace_dir),
                        PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))

    def Popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        assert args[1:] == ["-m", "crossrank.runtime.worker_process"], args
        return subprocess.Popen([args[0], str(HERE / "processes_trace_child.py")], env=self.env, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mg.add_run_options(parser, mix="throughput")
    parser.add_argument("--in-flight", type=int, default=None, help="processes.IN_FLIGHT (slices queued per child)")
    parser.add_argument("--tokenizer-processes", type=int, default=None,
                        help="Reranker(tokenizer_processes=...); 0: the worker processes tokenise")
    throughput.add_slice_options(parser)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    slices = throughput.apply_slice_options(args)
    if args.in_flight is not None:
        processes.IN_FLIGHT = args.in_flight

    pairs, tokenizer = mg.pairs_and_tokenizer(args.mix, args.pairs)
    calls: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        trace_dir = Path(tmp) / "trace"
        trace_dir.mkdir()
        model_dir = build_random_reranker(Path(tmp) / "m", tokenizer=tokenizer,  # type: ignore[arg-type]
                                          **mg.model_shape(args.small))
        processes.subprocess = _TracedSubprocess(trace_dir)  # type: ignore[assignment]
        reranker = Reranker(str(model_dir), devices=args.devices, workers="processes",
                            tokenizer_processes=args.tokenizer_processes)
        workers = reranker.processes
        assert workers is not None, "worker processes need several devices"
        pids = [p.pid for p in workers._procs]
        devices = list(workers.devices)
        reranker.score(pairs[:256])  # warm-up: first shapes, and each child's reference event
        for _ in range(args.repeats):
            begin = time.perf_counter()
            reranker.score(pairs, normalize=False)
            calls.append((begin, time.perf_counter()))
        procs = list(workers._procs)
        reranker.close()  # the children write their traces as they stop
        missing = [f"pid {p.pid} (exit code {p.returncode})" for p in procs
                   if not (trace_dir / f"child-{p.pid}.json").exists()]
        if missing:
            raise SystemExit(f"no trace from the child(ren) {', '.join(missing)}; their messages are on stderr")
        traces = [json.loads((trace_dir / f"child-{pid}.json").read_text(encoding="utf-8")) for pid in pids]
    runs = [{"wall_s": round(end - begin, 4), "pairs_per_s": round(len(pairs) / (end - begin), 1),
             "children": [{"device": device} | summarise_child(trace, begin, end)
                          for device, trace in zip(devices, traces, strict=True)]}
            for begin, end in calls]
    result = {"pairs": len(pairs), "mix": args.mix, "devices": devices, "cpus": os.cpu_count(), "slices": slices,
              "tokenizer_processes": args.tokenizer_processes,
              "in_flight": processes.IN_FLIGHT, "runs": runs,
              "median_pairs_per_s": statistics.median(r["pairs_per_s"] for r in runs)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


def _within(rows: list[Any], begin: float, end: float, at: Any) -> list[Any]:
    return [r for r in rows if begin <= at(r) <= end]


def summarise_child(trace: dict[str, list[Any]], begin: float, end: float) -> dict[str, Any]:
    """One child's share of the call that ran from ``begin`` to ``end`` (host clock, seconds)."""
    arrived = _within(trace["arrived"], begin, end, lambda r: r[0])
    encoded = _within(trace["encoded"], begin, end, lambda r: r[0])
    started = _within(trace["started"], begin, end, lambda r: r[0])
    answered = _within(trace["answered"], begin, end, lambda r: r[0])
    batches = _within(trace["batches"], begin, end, lambda r: r["launch"][0])
    ms = lambda t: round((t - begin) * 1e3, 2)  # noqa: E731
    out: dict[str, Any] = {
        "slices": len(started), "pairs": sum(r[2] for r in started), "batches": len(batches),
        "tokens": sum(r["tokens"] for r in batches),
        "tokenise_s": round(sum(e - b for b, e, _ in encoded), 4),
        "launch_host_s": round(sum(r["launch"][1] - r["launch"][0] for r in batches), 4),
        # Per slice, ms from the call's start: arrived, tokenised (begin, end), launched (begin, end), answered.
        "slice_spans_ms": [
            [ms(a[0]), ms(e[0]), ms(e[1]), ms(s[0]), ms(s[1]), ms(r[0]) if r else None, s[2]]
            for a, e, s, r in zip(arrived, encoded, started, answered + [None] * len(started), strict=False)
        ],
    }
    gpu = [r for r in batches if "gpu" in r]
    if not gpu or len(arrived) != len(started) or len(encoded) != len(started):
        return out
    first_slice = batches[0]["slice"]
    blame = {"parent": 0.0, "tokenise": 0.0, "launch": 0.0}
    for previous, batch in itertools.pairwise(gpu):
        idle = batch["gpu"][0] - previous["gpu"][1]
        if idle < GAP:
            continue
        if batch["slice"] == previous["slice"]:
            blame["launch"] += idle
            continue
        k = batch["slice"] - first_slice  # this call's k-th slice
        went_idle = previous["gpu"][1]  # the first of these that was not ready then kept the GPU waiting
        late = "parent" if arrived[k][0] > went_idle else "tokenise" if encoded[k][1] > went_idle else "launch"
        blame[late] += idle
    out.update(
        gpu_busy_s=round(sum(r["gpu"][1] - r["gpu"][0] for r in gpu), 4),
        idle_before_s=round(gpu[0]["gpu"][0] - begin, 4),
        idle_between_s=round(sum(max(0.0, b["gpu"][0] - a["gpu"][1]) for a, b in itertools.pairwise(gpu)), 4),
        idle_after_s=round(end - gpu[-1]["gpu"][1], 4),
        idle_between_blamed_s={what: round(seconds, 4) for what, seconds in blame.items()},
    )
    return out


if __name__ == "__main__":
    sys.exit(main())
