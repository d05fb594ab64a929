"""Benchmark the HTTP service against the library on the same weights, in the same run.

Latency p50/p99 and pairs/s at 1, 8 and 32 concurrent clients, each request one query with ``--docs`` documents, for
``--duration`` seconds per level, each timed after ``--warm-up`` seconds of its load (a service meets new batch shapes
in its first seconds, as the library does in its loop before its timed call); then the library on the same requests:
``Reranker.rerank`` in a loop, and every pair in **one** ``Reranker.score`` call (the library's best case, which the
service's shares are taken against). Last, one request of ``--latency-docs`` documents at a time, the library's
``rerank`` and the service alternating request by request: the service's median latency over the library's, timed
with the standard library's ``http.client`` (the least a client adds) and with ``httpx`` (a common client, about a
millisecond slower). The service runs as a separate process (``python -m crossrank.server.command``) so the clients'
Python does not share its interpreter.

    python benchmarks/serve.py --layers 2 --hidden 32 --device cpu --duration 10
    python benchmarks/serve.py --model-dir /path/to/bge-reranker-v2-m3 --device cuda --docs 50 --clients 8,32

``--soak SECONDS`` instead drives steady load (``--soak-clients`` concurrent clients, ``--docs`` documents of varying
length per request, so batch shapes vary) for that long and samples the service process's RSS (VmRSS) and, on CUDA,
its GPU memory (from ``/metrics``) every ``--sample-every`` seconds: memory should stay flat after warm-up.

    python benchmarks/serve.py --device cpu --soak 180 --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from crossrank import Reranker
from crossrank.testing import build_random_reranker, generated_sentences

SRC = Path(__file__).resolve().parents[1] / "src"


def make_requests(n_requests: int, docs: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    pool = list(generated_sentences(2000, seed=seed))
    rng = random.Random(seed)
    out = []
    for i in range(n_requests):
        # Passages of a few sentences each, so a pair is some tens to a couple hundred tokens.
        passages = [" ".join(rng.sample(pool, rng.randint(2, 6))) for _ in range(docs)]
        out.append((f"request {i}: " + rng.choice(pool), passages))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_library(reranker: Reranker, requests: list[tuple[str, list[str]]], duration: float) -> dict[str, Any]:
    reranker.rerank(*requests[0])  # warm-up
    latencies: list[float] = []
    pairs = 0
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < duration:
        query, docs = requests[i % len(requests)]
        t = time.perf_counter()
        reranker.rerank(query, docs)
        latencies.append(time.perf_counter() - t)
        pairs += len(docs)
        i += 1
    elapsed = time.perf_counter() - started
    return {"mode": "library", "clients": 1, "requests": i, "pairs_per_s": pairs / elapsed,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * percentile(latencies, 0.99)}


def bench_library_one_call(reranker: Reranker, requests: list[tuple[str, list[str]]], repeats: int = 3
                           ) -> dict[str, Any]:
    """Every pair of ``requests`` in one ``Reranker.score`` call: the median of ``repeats`` timed calls."""
    pairs = [(query, doc) for query, docs in requests for doc in docs]
    reranker.score(pairs[:256])  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        reranker.score(pairs)
        times.append(time.perf_counter() - t)
    return {"mode": "library, one call", "clients": 1, "requests": 1, "pairs": len(pairs),
            "pairs_per_s": len(pairs) / statistics.median(times), "p50_ms": 1000 * statistics.median(times),
            "p99_ms": 1000 * max(times)}


def alternating_latencies(reranker: Reranker, url: str, requests: list[tuple[str, list[str]]]
                          ) -> dict[str, list[float]]:
    """Seconds for each request by the library's ``rerank`` and by the service (posted alone, one at a time), request
    by request so all see the same device state, after one warm-up request each; and the seconds the service says
    its engine took (``x-compute-time``, whole milliseconds).

    The service is timed with two clients, which take turns going first: ``http.client``, the standard library's
    (what ``requests`` and urllib3 are built on), on one kept-alive connection, the least a Python client adds to
    the service's own time; and ``httpx.Client``, the client of the Cohere SDK and many others, which costs the
    client's side about a millisecond more for a 100-document request."""
    times: dict[str, list[float]] = {name: [] for name in ("library", "service_http_client", "service_httpx",
                                                           "service_engine")}
    address = urlsplit(url)
    with httpx.Client(base_url=url, timeout=300) as client, \
            contextlib.closing(http.client.HTTPConnection(address.hostname, address.port, timeout=300)) as lean:
        def post_lean(query: str, docs: list[str]) -> float:
            body = json.dumps({"query": query, "documents": docs}).encode()
            lean.request("POST", "/v1/rerank", body, {"Content-Type": "application/json"})
            response = lean.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"the service answered {response.status}")
            return float(response.headers["x-compute-time"]) / 1000

        def post_httpx(query: str, docs: list[str]) -> float:
            response = client.post("/v1/rerank", json={"query": query, "documents": docs}).raise_for_status()
            return float(response.headers["x-compute-time"]) / 1000

        clients = [("service_http_client", post_lean), ("service_httpx", post_httpx)]
        reranker.rerank(*requests[0])
        for _, post in clients:
            post(*requests[0])
        for i, (query, docs) in enumerate(requests):
            t = time.perf_counter()
            reranker.rerank(query, docs)
            times["library"].append(time.perf_counter() - t)
            for name, post in clients if i % 2 == 0 else clients[::-1]:
                t = time.perf_counter()
                times["service_engine"].append(post(query, docs))
                times[name].append(time.perf_counter() - t)
    return times


def cpu_model() -> str | None:
    """The host CPU's model name (Linux), which the service's share depends on as much as the GPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


async def bench_service(url: str, requests: list[tuple[str, list[str]]], clients: int, duration: float,
                        warm_up: float = 0.0) -> dict[str, Any]:
    """``clients`` clients each sending requests one after another: ``warm_up`` seconds of this load first, untimed
    (the service meets new batch shapes in its first seconds, as the library did in its loop before its timed call),
    then ``duration`` seconds timed."""
    latencies: list[float] = []
    pairs = 0
    counter = 0

    async def client_loop(client: httpx.AsyncClient, stop_at: float) -> None:
        nonlocal pairs, counter
        while time.perf_counter() < stop_at:
            query, docs = requests[counter % len(requests)]
            counter += 1
            t = time.perf_counter()
            resp = await client.post("/v1/rerank", json={"query": query, "documents": docs})
            resp.raise_for_status()
            latencies.append(time.perf_counter() - t)
            pairs += len(docs)

    async def load(client: httpx.AsyncClient, seconds: float) -> None:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(client_loop(client, stop_at) for _ in range(clients)))

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=clients)) as client:
        await client.post("/v1/rerank", json={"query": requests[0][0], "documents": requests[0][1]})  # warm-up
        await load(client, warm_up)
        latencies.clear()
        pairs = 0
        before = batch_totals((await client.get("/metrics")).text)
        started = time.perf_counter()
        await load(client, duration)
        elapsed = time.perf_counter() - started
        after = batch_totals((await client.get("/metrics")).text)
    batches = after["batches"] - before["batches"]
    return {"mode": "service", "clients": clients, "requests": len(latencies), "pairs_per_s": pairs / elapsed,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * percentile(latencies, 0.99),
            "batches": batches, "tokens_per_batch": (after["tokens"] - before["tokens"]) / max(1, batches),
            "requests_per_batch": (after["requests"] - before["requests"]) / max(1, batches)}


def batch_totals(metrics_text: str) -> dict[str, float]:
    """The service's running totals of forward passes, their tokens and the requests they held, from ``/metrics``."""
    names = {"crossrank_batch_tokens_count": "batches", "crossrank_batch_tokens_sum": "tokens",
             "crossrank_batch_requests_sum": "requests"}
    out = dict.fromkeys(names.values(), 0.0)
    for line in metrics_text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            out[names[name]] = float(value)
    return out


def read_rss_bytes(pid: int) -> int:
    """The process's resident set size, from /proc/<pid>/status (VmRSS, in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def read_gpu_memory(metrics_text: str) -> dict[str, float]:
    """Sum over devices of the service's ``crossrank_gpu_memory_*_bytes`` gauges (absent off CUDA)."""
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        for kind in ("allocated", "reserved"):
            if line.startswith(f"crossrank_gpu_memory_{kind}_bytes"):
                out[kind] = out.get(kind, 0.0) + float(line.split()[-1])
    return out


def summarise_memory(samples: list[dict[str, float]], key: str, warm_up_share: float) -> dict[str, float] | None:
    """Value after warm-up (the first sample past ``warm_up_share`` of the run), at the end, the max after warm-up,
    and the growth per minute between those two (least squares over the samples after warm-up)."""
    points = [(s["t"], s[key]) for s in samples if key in s]
    if len(points) < 2:
        return None
    end_t = points[-1][0]
    after = [p for p in points if p[0] >= warm_up_share * end_t] or points[-2:]
    if len(after) < 2:
        after = points[-2:]
    mean_t = statistics.fmean(t for t, _ in after)
    mean_v = statistics.fmean(v for _, v in after)
    var_t = sum((t - mean_t) ** 2 for t, _ in after)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in after) / var_t if var_t else 0.0
    return {"after_warm_up": after[0][1], "end": after[-1][1], "max": max(v for _, v in after),
            "min": min(v for _, v in after), "growth_per_min": slope * 60,
            "end_minus_warm_up": after[-1][1] - after[0][1], "warm_up_at_s": after[0][0]}


async def soak_service(url: str, pid: int, requests: list[tuple[str, list[str]]], clients: int, duration: float,
                       sample_every: float, warm_up_share: float) -> dict[str, Any]:
    """Steady load from ``clients`` clients for ``duration`` seconds while sampling the service's memory."""
    samples: list[dict[str, float]] = []
    latencies: list[float] = []
    pairs = 0
    counter = 0
    errors = 0
    started = time.perf_counter()
    stop_at = started + duration

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal pairs, counter, errors
        while time.perf_counter() < stop_at:
            query, docs = requests[counter % len(requests)]
            counter += 1
            t = time.perf_counter()
            resp = await client.post("/v1/rerank", json={"query": query, "documents": docs})
            if resp.status_code != 200:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t)
            pairs += len(docs)

    async def sampler(client: httpx.AsyncClient) -> None:
        while True:
            sample = {"t": time.perf_counter() - started, "rss": float(read_rss_bytes(pid))}
            gpu = read_gpu_memory((await client.get("/metrics")).text)
            sample.update({f"gpu_{k}": v for k, v in gpu.items()})
            samples.append(sample)
            if time.perf_counter() >= stop_at:
                return
            await asyncio.sleep(min(sample_every, max(0.0, stop_at - time.perf_counter())))

    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        await asyncio.gather(sampler(client), *(client_loop(client) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    memory = {key: summarise_memory(samples, key, warm_up_share) for key in ("rss", "gpu_allocated", "gpu_reserved")}
    return {"mode": "soak", "clients": clients, "seconds": elapsed, "requests": len(latencies), "errors": errors,
            "pairs_per_s": pairs / elapsed, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * percentile(latencies, 0.99), "warm_up_share": warm_up_share,
            "memory": {k: v for k, v in memory.items() if v is not None}, "samples": samples}


def print_soak(row: dict[str, Any], header: str) -> None:
    print(header)
    print(f"requests={row['requests']} errors={row['errors']} pairs/s={row['pairs_per_s']:.0f} "
          f"p50={row['p50_ms']:.1f} ms p99={row['p99_ms']:.1f} ms samples={len(row['samples'])}")
    print("| memory | after warm-up MiB | end MiB | max MiB | min MiB | end - warm-up MiB | growth MiB/min |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    mib = 1024 * 1024
    for key, m in row["memory"].items():
        print(f"| {key} | {m['after_warm_up'] / mib:.1f} | {m['end'] / mib:.1f} | {m['max'] / mib:.1f} | "
              f"{m['min'] / mib:.1f} | {m['end_minus_warm_up'] / mib:+.1f} | {m['growth_per_min'] / mib:+.2f} |")
    print("RSS curve (s: MiB): " + ", ".join(f"{s['t']:.0f}: {s['rss'] / mib:.0f}" for s in row["samples"]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(model_dir: str, device: str, max_batch_tokens: int, devices: str | None = None
                  ) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    placement = ["--devices", devices] if devices else ["--device", device]
    cmd = [sys.executable, "-m", "crossrank.server.command", "--model", model_dir, *placement,
           "--port", str(port), "--max-batch-tokens", str(max_batch_tokens), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the service exited during start-up")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the service did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="A saved cross-encoder; without it a random one is built.")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--devices", help="Several GPUs (e.g. 0,1) for the library and the service alike; "
                                          "replaces --device.")
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds per measurement.")
    parser.add_argument("--warm-up", type=float, default=3.0,
                        help="Seconds of each concurrency level's load before it is timed (the library's timed call "
                             "likewise follows its loop).")
    parser.add_argument("--docs", type=int, default=100, help="Documents per request.")
    parser.add_argument("--clients", default="1,8,32", help="Concurrency levels, comma-separated.")
    parser.add_argument("--latency-docs", type=int, default=100,
                        help="Documents in each request of the one-request-at-a-time latency comparison.")
    parser.add_argument("--latency-requests", type=int, default=60,
                        help="Requests timed one at a time, by the library and by the service.")
    parser.add_argument("--max-batch-tokens", type=int, default=0,
                        help="Token budget of a batch; 0: the device's default.")
    parser.add_argument("--json", help="Also write the rows to this file.")
    parser.add_argument("--soak", type=float, metavar="SECONDS",
                        help="Soak mode: steady load for this long while sampling the service's memory.")
    parser.add_argument("--soak-clients", type=int, default=8, help="Concurrent clients in soak mode.")
    parser.add_argument("--sample-every", type=float, default=3.0, help="Seconds between memory samples (soak).")
    parser.add_argument("--warm-up-share", type=float, default=0.2,
                        help="Share of the soak counted as warm-up before the memory baseline.")
    args = parser.parse_args()
    if args.soak:
        soak(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or str(build_random_reranker(Path(tmp) / "model", layers=args.layers,
                                                                hidden=args.hidden, heads=args.heads))
        requests = make_requests(64, args.docs)
        single = make_requests(args.latency_requests, args.latency_docs, seed=2)
        reranker = Reranker(model_dir, device=args.device, devices=args.devices,
                            max_batch_tokens=args.max_batch_tokens)
        rows = [bench_library(reranker, requests, args.duration), bench_library_one_call(reranker, requests)]
        tokens = statistics.median(len(e) for e in reranker.encode([(q, d) for q, docs in requests[:4] for d in docs]))
        reranker.close()
        del reranker  # free the device before the service loads its own copy
        proc, url = start_service(model_dir, args.device, args.max_batch_tokens, args.devices)
        try:
            for clients in (int(c) for c in args.clients.split(",")):
                rows.append(asyncio.run(bench_service(url, requests, clients, args.duration, args.warm_up)))
            # The library again, alive beside the service only now, for the one-request latencies.
            reranker = Reranker(model_dir, device=args.device, devices=args.devices,
                                max_batch_tokens=args.max_batch_tokens)
            single_times = alternating_latencies(reranker, url, single)
            reranker.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        one_call = rows[1]["pairs_per_s"]
        for row in rows:
            row["share_of_library"] = row["pairs_per_s"] / one_call
        latency: dict[str, Any] = {"docs": args.latency_docs, "requests": len(single)}
        for name, seconds in single_times.items():
            latency[f"{name}_p50_ms"] = 1000 * statistics.median(seconds)
        for client in ("http_client", "httpx"):
            latency[f"service_{client}_over_library"] = latency[f"service_{client}_p50_ms"] / latency["library_p50_ms"]
        # What httpx adds over http.client, request by request (the two ran back to back): the client's own cost.
        latency["httpx_extra_p50_ms"] = 1000 * statistics.median(
            a - b for a, b in zip(single_times["service_httpx"], single_times["service_http_client"], strict=True))
        model = args.model_dir or f"random {args.layers} layers x hidden {args.hidden}"
        placement = args.devices or args.device
        meta = {"device": placement, "gpu": gpu_name(placement), "machine": platform.node(),
                "cpu": cpu_model(), "cpus": os.cpu_count(), "docs": args.docs, "median_pair_tokens": tokens,
                "duration": args.duration, "warm_up": args.warm_up, "model": model,
                "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                "command": " ".join(sys.argv)}
        print(" ".join(f"{k}={v}" for k, v in meta.items()))
        print("| mode | clients | requests | pairs/s | share of the library's one call | p50 ms | p99 ms "
              "| tokens a batch | requests a batch |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            batch = (f"{r['tokens_per_batch']:.0f} | {r['requests_per_batch']:.1f}" if "batches" in r else " | ")
            print(f"| {r['mode']} | {r['clients']} | {r['requests']} | {r['pairs_per_s']:.0f} | "
                  f"{100 * r['share_of_library']:.1f}% | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {batch} |")
        print(f"one request of {args.latency_docs} documents, median of {len(single)}: library rerank "
              f"{latency['library_p50_ms']:.1f} ms; service {latency['service_http_client_p50_ms']:.1f} ms with "
              f"http.client ({latency['service_http_client_over_library']:.3f}x; its engine "
              f"{latency['service_engine_p50_ms']:.0f} ms), {latency['service_httpx_p50_ms']:.1f} ms with httpx "
              f"({latency['service_httpx_over_library']:.3f}x; {latency['httpx_extra_p50_ms']:+.2f} ms a request)")
        if args.json:
            Path(args.json).write_text(json.dumps({**meta, "rows": rows, "latency": latency}, indent=2))


def gpu_name(placement: str) -> str | None:
    """The GPU's name where ``placement`` (``--device`` or ``--devices``) runs on one, else None."""
    if "cpu" in placement:
        return None
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def soak(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or str(build_random_reranker(Path(tmp) / "model", layers=args.layers,
                                                                hidden=args.hidden, heads=args.heads))
        # Many distinct requests of varying passage lengths, so that batch shapes keep changing.
        requests = make_requests(256, args.docs, seed=1)
        proc, url = start_service(model_dir, args.device, args.max_batch_tokens, args.devices)
        try:
            row = asyncio.run(soak_service(url, proc.pid, requests, args.soak_clients, args.soak, args.sample_every,
                                           args.warm_up_share))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        model = args.model_dir or f"random {args.layers} layers x hidden {args.hidden}"
        row.update({"device": args.device, "model": model, "docs": args.docs, "machine": platform.node(),
                    "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "command": " ".join(sys.argv),
                    "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}})
        print_soak(row, f"# soak device={args.device} machine={platform.node()} cpus={os.cpu_count()} "
                        f"clients={args.soak_clients} docs/request={args.docs} seconds={args.soak} model={model} "
                        f"date={row['date']} OMP_NUM_THREADS={row['omp_num_threads']} "
                        + " ".join(f"{k}={v}" for k, v in row["malloc_env"].items()))
        if args.json:
            Path(args.json).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
