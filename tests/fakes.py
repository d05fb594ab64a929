"""Stand-ins for a device, for the runtime's and the engine's tests."""

from __future__ import annotations

import threading

import torch

from crossrank.core.tokenize import EncodedPair


class FakeBackend:
    """Stands in for a GPU: runs out of memory on batches larger than ``fits``; each logit is its sequence's ``pair``
    (or ``value``). ``gate``: when given, every forward waits for it first."""

    name = "fake"
    device = torch.device("cpu")
    dtype = torch.float32
    padded = True

    def __init__(self, fits: int = 1_000_000, error: Exception | None = None, value: float | None = None,
                 gate: threading.Event | None = None) -> None:
        self.fits, self.error, self.value, self.gate = fits, error, value, gate
        self.calls: list[int] = []

    def forward(self, batch: list[EncodedPair]) -> torch.Tensor:
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        self.calls.append(len(batch))
        if len(batch) > self.fits:
            raise self.error or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.tensor([self.value if self.value is not None else float(e.pair) for e in batch])


def encoded(n: int, start: int = 0, length: int = 3) -> list[EncodedPair]:
    """``n`` sequences of ``length`` tokens whose ``pair`` numbers count from ``start``."""
    return [EncodedPair([0, *([5] * (length - 2)), 2], None, start + i) for i in range(n)]
