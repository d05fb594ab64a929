"""Pure functions that group sequences into batches under a token budget.

``pack_batches(lengths, budget, padded=True)`` sorts sequences longest first and fills each batch while its cost stays
within ``budget``: for a padded backend the cost is ``longest * count`` (padding counts), for a packed backend it is the
sum of lengths. A sequence longer than the budget goes alone in its own batch. Every index appears exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence


def batch_cost(lengths: Sequence[int], *, padded: bool) -> int:
    """Tokens a batch of these lengths costs: padded to the longest, or packed end to end."""
    if not lengths:
        return 0
    return max(lengths) * len(lengths) if padded else sum(lengths)


def pack_batches(
    lengths: Sequence[int],
    max_batch_tokens: int,
    *,
    padded: bool = True,
    max_batch_size: int | None = None,
) -> list[list[int]]:
    """Group indices of ``lengths`` into batches, longest sequences first.

    >>> pack_batches([3, 10, 4, 9], max_batch_tokens=20)
    [[1, 3], [2, 0]]
    """
    if max_batch_tokens < 1:
        raise ValueError("max_batch_tokens must be at least 1")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError("max_batch_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    total = 0
    for i in order:
        n = lengths[i]
        new_longest = max(longest, n)
        new_cost = new_longest * (len(current) + 1) if padded else total + n
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (new_cost > max_batch_tokens or full):
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
