"""What the engine reports: a request's outcome, one batch's stats, running totals and health."""

from __future__ import annotations

from dataclasses import dataclass

from crossrank.core.ranking import RerankResult


@dataclass(frozen=True)
class EngineHealth:
    """The engine's state, read without any model work (for readiness probes)."""

    running: bool
    worker_alive: bool
    queued_pairs: int
    seconds_since_progress: float | None  # since the last forward pass finished; None before the first
    pairs_per_second: float | None  # recent throughput of the model, None before the first batch
    stalled: bool  # work has waited longer than the stall bound with no forward pass finishing

    @property
    def ok(self) -> bool:
        return self.running and self.worker_alive and not self.stalled


@dataclass(frozen=True)
class BatchStats:
    """What one forward pass held: sequences, tokens (padded cost for padded backends), distinct requests, seconds."""

    pairs: int
    tokens: int
    requests: int
    seconds: float


@dataclass(frozen=True)
class RerankOutcome:
    """Ranked results of one request, its real token count and where its time went (seconds)."""

    results: list[RerankResult]
    tokens: int
    queue_seconds: float
    inference_seconds: float
    total_seconds: float
    batches: int


@dataclass(frozen=True)
class EngineStats:
    """Running totals since start, for metrics and tests."""

    batches: int
    pairs: int
    tokens: int
    max_requests_in_batch: int
    queued_pairs: int

