"""Pure functions that cut a call into slices and group sequences into batches under a token budget.

``encode_slices(n)`` says which pairs are tokenised and scored together: small slices first, so the device starts
early, growing while the next ones are tokenised. ``pack_batches(lengths, budget, padded=True)`` sorts sequences
longest first and fills each batch while its cost stays within ``budget``: for a padded backend the cost is
``longest * count`` (padding counts), for a packed backend it is the sum of lengths. A sequence longer than the budget
goes alone in its own batch. Every index appears exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ENCODE_SLICE = 256
"""Most pairs tokenised at a time: the next slices are tokenised while the device scores this one, so a slice must
tokenise faster than the devices score the ones before it."""
FIRST_ENCODE_SLICE = 16
"""Pairs in the first slice: nothing overlaps its tokenisation, so it is small and the device starts early."""
ENCODE_GROWTH = 1.5
"""How much each slice grows over the one before it, up to ``ENCODE_SLICE``."""
ENCODE_TAPER: tuple[int, ...] = (128, 64, 32, 16)
"""Sizes of a call's last slices, so that several devices, each taking whole slices, finish together."""


def encode_slices(n: int, first: int | None = None, most: int | None = None,
                  growth: float | None = None, taper: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of the slices that ``n`` pairs are tokenised and scored in: ``first`` pairs, then ``growth``
    times as many each time up to ``most``, and the ``taper`` slices last (defaults: the module's constants). The same
    slices for any number of devices, so the same batches and identical scores on one device and several.

    >>> encode_slices(1000, first=64, most=256, growth=2, taper=())
    [(0, 64), (64, 192), (192, 448), (448, 704), (704, 960), (960, 1000)]
    >>> [end - start for start, end in encode_slices(1000)]
    [16, 24, 36, 54, 81, 122, 183, 244, 128, 64, 32, 16]
    """
    size = max(1, first if first is not None else FIRST_ENCODE_SLICE)
    most = max(1, most if most is not None else ENCODE_SLICE)
    growth = ENCODE_GROWTH if growth is None else growth
    tail = [t for t in (ENCODE_TAPER if taper is None else taper) if t > 0]
    if n <= size + sum(tail):
        tail = []
    head = n - sum(tail)
    size = min(size, most)
    bounds, start = [], 0
    while start < head:
        end = min(head, start + size)
        bounds.append((start, end))
        start, size = end, min(most, max(size + 1, math.ceil(size * growth)))
    for t in tail:
        bounds.append((start, start + t))
        start += t
    return bounds


def pack_batches(lengths: Sequence[int], max_batch_tokens: int, *, padded: bool = True) -> list[list[int]]:
    """Group indices of ``lengths`` into batches, longest sequences first.

    >>> pack_batches([3, 10, 4, 9], max_batch_tokens=20)
    [[1, 3], [2, 0]]
    """
    if max_batch_tokens < 1:
        raise ValueError("max_batch_tokens must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    total = 0
    for i in order:
        n = lengths[i]
        new_longest = max(longest, n)
        new_cost = new_longest * (len(current) + 1) if padded else total + n
        if current and new_cost > max_batch_tokens:
            batches.append(current)
            current, longest, total = [], 0, 0
            new_longest = n
        current.append(i)
        longest = new_longest
        total += n
    if current:
        batches.append(current)
    return batches


def restore_order(batches: Sequence[Sequence[int]], batch_values: Sequence[Sequence[float]], n: int) -> list[float]:
    """Put values computed per batch back at their input positions; fails loudly on a lost or duplicated index."""
    out: list[float | None] = [None] * n
    for batch, values in zip(batches, batch_values, strict=True):
        if len(batch) != len(values):
            raise ValueError("a batch returned a different number of values than it had sequences")
        for i, v in zip(batch, values):
            if out[i] is not None:
                raise ValueError(f"index {i} was scored twice")
            out[i] = v
    missing = [i for i, v in enumerate(out) if v is None]
    if missing:
        raise ValueError(f"indices {missing[:5]} were never scored")
    return [v for v in out if v is not None]
