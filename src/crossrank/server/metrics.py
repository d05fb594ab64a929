"""Prometheus metrics of one app (its own registry, so several apps in one process do not collide)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from crossrank.engine import BatchStats, RerankOutcome

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("crossrank_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.request_seconds = Histogram("crossrank_request_duration_seconds", "HTTP request time", ["route"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.queue_seconds = Histogram("crossrank_queue_duration_seconds",
                                       "Time a rerank waited before its first batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.inference_seconds = Histogram("crossrank_inference_duration_seconds",
                                           "Time from a rerank's first batch to its last", buckets=LATENCY_BUCKETS,
                                           registry=r)
        self.total_seconds = Histogram("crossrank_rerank_duration_seconds", "Time of a rerank in the engine",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.documents = Histogram("crossrank_documents_per_request", "Documents per rerank request",
                                   buckets=SIZE_BUCKETS, registry=r)
        self.batch_size = Histogram("crossrank_batch_size", "Sequences per forward pass", buckets=SIZE_BUCKETS,
                                    registry=r)
        self.batch_tokens = Histogram("crossrank_batch_tokens", "Tokens per forward pass (padded cost)",
                                      buckets=TOKEN_BUCKETS, registry=r)
        self.batch_requests = Histogram("crossrank_batch_requests", "Distinct requests per forward pass",
                                        buckets=SIZE_BUCKETS, registry=r)
        self.queued_pairs = Gauge("crossrank_queued_pairs", "Pairs admitted and not yet answered", registry=r)
        self.gpu_allocated = Gauge("crossrank_gpu_memory_allocated_bytes",
                                   "GPU memory held by tensors (torch.cuda.memory_allocated), CUDA devices only",
                                   ["device"], registry=r)
        self.gpu_reserved = Gauge("crossrank_gpu_memory_reserved_bytes",
                                  "GPU memory reserved by torch's caching allocator, CUDA devices only", ["device"],
                                  registry=r)
        self._cuda_devices: list[str] = []

    def watch_queue(self, read: Callable[[], int]) -> None:
        self.queued_pairs.set_function(read)

    def watch_gpu_memory(self, devices: Sequence[str]) -> None:
        """Report the memory of the CUDA ones among ``devices`` on every scrape (others are ignored)."""
        self._cuda_devices = [d for d in devices if d.startswith("cuda")]

    def _update_gpu_memory(self) -> None:
        if not self._cuda_devices:
            return
        import torch

        for device in self._cuda_devices:
            self.gpu_allocated.labels(device).set(torch.cuda.memory_allocated(device))
            self.gpu_reserved.labels(device).set(torch.cuda.memory_reserved(device))

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.pairs)
        self.batch_tokens.observe(stats.tokens)
        self.batch_requests.observe(stats.requests)

    def observe_rerank(self, outcome: RerankOutcome, documents: int) -> None:
        self.queue_seconds.observe(outcome.queue_seconds)
        self.inference_seconds.observe(outcome.inference_seconds)
        self.total_seconds.observe(outcome.total_seconds)
        self.documents.observe(documents)

    def render(self) -> bytes:
        self._update_gpu_memory()
        return generate_latest(self.registry)
