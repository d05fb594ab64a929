"""Tokenising ahead of the device: in a thread of this process, or in tokenizer processes for several devices.

With several GPUs the host sets the pace: one Python process tokenises about as fast as two fast GPUs score, so they
would wait on it. :class:`TokenizerProcesses` runs several children (:mod:`crossrank.runtime.child_main`, kind
``tokenizer``), each with the same tokenizer (pickled from the caller's, so settings made on it travel too) and the
same encoder settings, so the same ids; slices go to them in turn. :func:`encoded_slices` keeps a few slices tokenising
ahead of the caller, whichever does the work, and yields them in order.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future
from typing import Any

from crossrank.core.tokenize import EncodedPair, PairEncoder
from crossrank.runtime.child import Child, start_children

log = logging.getLogger(__name__)

AHEAD = 2
"""Slices requested from each tokenizer process before the first of them is read."""
START_TIMEOUT = 120.0
"""Seconds a tokenizer process may take to start (import transformers, unpickle the tokenizer)."""

Pairs = Sequence[tuple[str, str]]
SubmitSlice = Callable[[Pairs, str], "Future[list[EncodedPair]]"]


def default_processes(devices: int, cpus: int | None = None) -> int:
    """Tokenizer processes for ``devices`` devices: none for one device (a thread keeps up with one GPU), else one per
    4 cores, at least 2 and at most 8.

    >>> default_processes(1, 32), default_processes(2, 32), default_processes(2, 8), default_processes(8, 128)
    (0, 8, 2, 8)
    """
    if devices < 2:
        return 0
    return max(2, min(8, (cpus or os.cpu_count() or 1) // 4))


def encoded_slices(submit: SubmitSlice, pairs: Pairs, bounds: Sequence[tuple[int, int]], mode: str,
                   ahead: int) -> Generator[list[EncodedPair], None, None]:
    """Each ``pairs[start:end]`` of ``bounds`` tokenised by ``submit``, in order, up to ``ahead`` slices requested
    before the caller takes the oldest."""
    pending: deque[Future[list[EncodedPair]]] = deque()
    for start, end in bounds:
        pending.append(submit(pairs[start:end], mode))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class TokenizerProcesses:
    """``processes`` children that tokenise pairs as ``encoder`` would, kept until :meth:`close`."""

    def __init__(self, tokenizer: Any, encoder: PairEncoder, chunk_overlap: int, processes: int) -> None:
        if processes < 1:
            raise ValueError("tokenising in processes needs at least one process")
        self._spec = {
            "tokenizer": tokenizer, "max_length": encoder.max_length, "query_max_length": encoder.query_max_length,
            "fast_join": encoder.fast_join, "chunk_overlap": chunk_overlap,
        }
        # The host's cores shared among the children's tokenizer threads.
        self._env = {"RAYON_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))}
        self._children, _ = start_children("tokenizer", [self._spec] * processes,
                                           [f"tokenizer process {i}" for i in range(processes)], START_TIMEOUT,
                                           self._env)
        self._next = 0

    @property
    def size(self) -> int:
        return len(self._children)

    @property
    def ahead(self) -> int:
        return AHEAD * len(self._children)

    def submit(self, pairs: Pairs, mode: str) -> Future[list[EncodedPair]]:
        """Tokenise ``pairs`` (``mode``: ``truncate`` or ``chunk``) in the next child; a child found dead is started
        again first."""
        k = self._next % len(self._children)
        self._next += 1
        if not self._children[k].alive:
            log.warning("a tokenizer process had stopped; starting it again")
            self._children[k].close(timeout=5)
            self._children[k] = Child("tokenizer", self._spec, name=f"tokenizer process {k}", env=self._env)
            self._children[k].wait_ready(START_TIMEOUT)
        return self._children[k].request((list(pairs), mode))

    def close(self) -> None:
        """Stop every child (idempotent)."""
        for child in self._children:
            child.close(timeout=10)
        self._children = []
