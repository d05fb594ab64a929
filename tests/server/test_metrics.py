"""Service metrics: GPU memory gauges exist for CUDA devices only and are read on every scrape."""

from __future__ import annotations

import httpx
import pytest
import torch

from crossrank.server.metrics import ServiceMetrics


def _gpu_samples(metrics: ServiceMetrics) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels["device"]): s.value for family in metrics.registry.collect()
            for s in family.samples if s.name.startswith("crossrank_gpu_memory_")}


def test_gpu_memory_is_read_on_scrape_for_cuda_devices_only(monkeypatch: pytest.MonkeyPatch) -> None:
    used = {"cuda:0": 1000, "cuda:1": 3000}
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: used[device])
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 2 * used[device])
    metrics = ServiceMetrics()
    metrics.watch_gpu_memory(["cpu", "cuda:0", "cuda:1"])
    text = metrics.render().decode()
    assert 'crossrank_gpu_memory_allocated_bytes{device="cuda:1"} 3000.0' in text
    allocated, reserved = "crossrank_gpu_memory_allocated_bytes", "crossrank_gpu_memory_reserved_bytes"
    assert _gpu_samples(metrics) == {(allocated, "cuda:0"): 1000, (reserved, "cuda:0"): 2000,
                                     (allocated, "cuda:1"): 3000, (reserved, "cuda:1"): 6000}
    used["cuda:0"] = 5000  # a later scrape sees the new figure
    metrics.render()
    assert _gpu_samples(metrics)[(allocated, "cuda:0")] == 5000


def test_no_gpu_memory_off_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cuda(device: str) -> int:
        raise AssertionError("CUDA memory read for a CPU-only service")

    monkeypatch.setattr(torch.cuda, "memory_allocated", no_cuda)
    metrics = ServiceMetrics()
    metrics.watch_gpu_memory(["cpu"])
    metrics.render()
    assert _gpu_samples(metrics) == {}


async def test_cpu_service_reports_no_gpu_memory(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert "crossrank_queued_pairs" in text
    assert not [line for line in text.splitlines() if line.startswith("crossrank_gpu_memory_")]
