"""How far one process per GPU would go: N independent single-device Rerankers in N processes, against one GPU.

    PYTHONPATH=src python benchmarks/multi_gpu_processes.py --pairs 4000 --out processes.json

With worker threads (``Reranker(devices=..., workers="threads")``, the service's way) one tokenizer thread and every
worker's kernel launches share one interpreter lock (benchmarks/RESULTS.md, issue 7). This probe measures how far
processes could go (the upper bound, against which crossrank's worker processes, the default for several devices, are
measured in RESULTS.md): each of ``--devices`` gets its own spawned process holding a
plain ``Reranker(device=...)``, the pairs are split into contiguous shares (one per process), every process scores its
share end to end (tokenisation included) at the same moment, and the wall time runs from the start signal to the last
result. The one-GPU baseline is measured first, in this process, on the same pairs and weights. Scores are compared too:
each share is sliced and packed from its own start, so batches differ from one GPU's and fp16 results may differ in the
last bits (a real implementation would hand out the same slices one GPU uses, to keep them identical).
``--devices cpu,cpu --small`` runs the same code without a GPU (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import multi_gpu as mg
from crossrank import Reranker
from crossrank.testing import build_random_reranker


def _child(conn: Connection, model_dir: str, device: str, pairs: list[tuple[str, str]], threads: int | None) -> None:
    if threads:  # read by the tokenizer's thread pool when it first starts, which is later than this
        os.environ["RAYON_NUM_THREADS"] = str(threads)
    reranker = Reranker(model_dir, device=device)
    reranker.score(pairs[: min(256, len(pairs))])  # warm-up
    conn.send("ready")
    while conn.recv() == "go":
        started = time.perf_counter()
        scores = reranker.score(pairs, normalize=False)
        conn.send((scores, time.perf_counter() - started))
    reranker.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--single", default="cuda:0")
    parser.add_argument("--devices", default="cuda:0,cuda:1", help="one process per entry")
    parser.add_argument("--mix", choices=("multi", "throughput"), default="multi")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--child-threads", type=int, default=None,
                        help="tokenizer threads in each process (default: the tokenizer's own, every core)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    pairs, tokenizer = mg.pairs_and_tokenizer(args.mix, args.pairs)
    shape = mg.model_shape(args.small)
    devices = args.devices.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(build_random_reranker(Path(tmp) / "m", tokenizer=tokenizer, **shape))  # type: ignore[arg-type]
        one = Reranker(model_dir, device=args.single)
        one_scores, one_seconds = mg.timed(one, pairs, args.repeats)
        one.close()

        share = -(-len(pairs) // len(devices))
        parts = [pairs[i * share : (i + 1) * share] for i in range(len(devices))]
        ctx = mp.get_context("spawn")
        links = []
        for device, part in zip(devices, parts, strict=True):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_child, args=(child, model_dir, device, part, args.child_threads))
            process.start()
            links.append((parent, process))
        for parent, _ in links:
            assert parent.recv() == "ready"
        walls: list[float] = []
        child_seconds: list[list[float]] = []
        many_scores: list[float] = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            for parent, _ in links:
                parent.send("go")
            results = [parent.recv() for parent, _ in links]
            walls.append(time.perf_counter() - started)
            child_seconds.append([round(seconds, 4) for _, seconds in results])
            many_scores = [s for scores, _ in results for s in scores]
        for parent, process in links:
            parent.send("stop")
            process.join()

    one_rate = len(pairs) / statistics.median(one_seconds)
    many_rate = len(pairs) / statistics.median(walls)
    result = {
        "pairs": len(pairs), "mix": args.mix, "model_shape": shape, "child_threads": args.child_threads,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "single": {"device": args.single, "pairs_per_s": round(one_rate, 1), "seconds": one_seconds},
        "processes": {"devices": devices, "pairs_per_s": round(many_rate, 1), "wall_seconds": walls,
                      "seconds_per_process": child_seconds},
        "speedup": round(many_rate / one_rate, 3),
        "max_abs_logit_diff": max(abs(a - b) for a, b in zip(one_scores, many_scores, strict=True)),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
