"""A request in flight between the caller's event loop and the threads that run its batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from crossrank.core.tokenize import EncodedPair


@dataclass(eq=False)
class _Request:
    """One caller's sequences in flight, queued slice by slice as each is tokenised; ``encoded``, ``logits``,
    ``remaining`` and ``slices_left`` change under the engine's deliver lock only."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[float]]
    enqueued_at: float = 0.0
    encoded: list[EncodedPair] = field(default_factory=list)
    logits: list[float | None] = field(default_factory=list)
    slices_left: int = 0  # slices not queued yet: the answer goes out when this and ``remaining`` are 0
    remaining: int = 0  # sequences queued and not answered yet
    cancelled: bool = False
    failed: bool = False
    first_batch_at: float | None = None
    last_batch_end: float | None = None
    batches: int = 0


@dataclass(frozen=True)
class _Item:
    request: _Request
    position: int

    @property
    def sequence(self) -> EncodedPair:
        return self.request.encoded[self.position]


def _set_result(future: asyncio.Future[list[float]], value: list[float]) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[list[float]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _call_in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: object) -> None:
    # A closed loop means the caller is gone: nobody is waiting for this answer any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)
