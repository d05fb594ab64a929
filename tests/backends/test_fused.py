"""The host side of the Triton kernels: the attention kernel's work list (pure numpy, runs anywhere)."""

from __future__ import annotations

import numpy as np
import pytest

from crossrank.backends.fused import ITEM_SEQUENCE, attention_items


@pytest.mark.parametrize("block_m", [16, 64])
def test_attention_items_cover_every_query_block_once(block_m: int) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 600, size=200)
    items = attention_items(lengths, block_m)
    seq, block = items // ITEM_SEQUENCE, items % ITEM_SEQUENCE
    want = sorted((s, b) for s, n in enumerate(lengths) for b in range(-(-int(n) // block_m)))
    assert sorted(zip(seq.tolist(), block.tolist(), strict=True)) == want
    assert len(items) <= lengths.sum() // block_m + len(lengths)  # the bound a fixed work list is sized by


def test_attention_items_pad_with_no_work_and_refuse_too_small_a_list() -> None:
    items = attention_items(np.array([65, 1]), 64, size=6)
    assert items.tolist() == [0, 1, ITEM_SEQUENCE, -1, -1, -1]
    with pytest.raises(ValueError, match="do not fit"):
        attention_items(np.array([65, 1]), 64, size=2)
    assert attention_items(np.array([], dtype=np.int64), 64).tolist() == []
