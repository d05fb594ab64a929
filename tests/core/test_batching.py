import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossrank.core.batching import encode_slices, pack_batches, restore_order

lengths_st = st.lists(st.integers(min_value=1, max_value=600), max_size=200)


@settings(max_examples=300, deadline=None)
@given(lengths=lengths_st, budget=st.integers(min_value=1, max_value=5000), padded=st.booleans())
def test_every_index_exactly_once_and_budget_holds(lengths, budget, padded):
    batches = pack_batches(lengths, budget, padded=padded)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert b, "no empty batch"
        sizes = [lengths[i] for i in b]
        cost = max(sizes) * len(sizes) if padded else sum(sizes)
        # over budget only when a single sequence alone is longer than the budget
        assert cost <= budget or len(b) == 1


@settings(max_examples=200, deadline=None)
@given(lengths=lengths_st, budget=st.integers(min_value=1, max_value=5000), padded=st.booleans())
def test_restore_order_puts_values_back(lengths, budget, padded):
    batches = pack_batches(lengths, budget, padded=padded)
    values = [[float(i) * 10 for i in b] for b in batches]
    assert restore_order(batches, values, len(lengths)) == [float(i) * 10 for i in range(len(lengths))]


@given(lengths=st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=50))
def test_longest_first(lengths):
    batches = pack_batches(lengths, 10_000)
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)


def test_padded_cost_counts_padding():
    assert pack_batches([3, 10, 4, 9], max_batch_tokens=20) == [[1, 3], [2, 0]]
    # packed counting lets more short sequences share a batch than padded counting does
    assert pack_batches([10, 1, 1, 1], max_batch_tokens=13, padded=False) == [[0, 1, 2, 3]]
    assert pack_batches([10, 1, 1, 1], max_batch_tokens=13, padded=True) == [[0], [1, 2, 3]]


def test_over_budget_sequence_goes_alone():
    assert pack_batches([50, 2, 2], max_batch_tokens=10) == [[0], [1, 2]]


def test_restore_order_detects_loss_and_duplicates():
    import pytest

    with pytest.raises(ValueError, match="never scored"):
        restore_order([[0]], [[1.0]], 2)
    with pytest.raises(ValueError, match="twice"):
        restore_order([[0], [0]], [[1.0], [2.0]], 1)
    with pytest.raises(ValueError, match="at least 1"):
        pack_batches([1], 0)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=0, max_value=3000), first=st.integers(min_value=1, max_value=64),
       most=st.integers(min_value=1, max_value=512), growth=st.floats(min_value=1.0, max_value=3.0),
       taper=st.lists(st.integers(min_value=0, max_value=64), max_size=4))
def test_encode_slices_cover_every_pair_once_in_order(n, first, most, growth, taper):
    bounds = encode_slices(n, first=first, most=most, growth=growth, taper=taper)
    assert [i for start, end in bounds for i in range(start, end)] == list(range(n))
    assert all(end > start for start, end in bounds)
    assert all(end - start <= max(most, *taper, 1) for start, end in bounds)


@pytest.mark.parametrize("n", [0, 1, 63, 64, 100, 4000])
@pytest.mark.parametrize("growth", [1.5, 2.0])
def test_encode_slices_start_small_grow_and_cover_everything(n, growth):
    bounds = encode_slices(n, first=16, most=256, growth=growth, taper=())
    assert [s for s, _ in bounds[1:]] == [e for _, e in bounds[:-1]], "contiguous"
    assert (bounds[0][0], bounds[-1][1]) == (0, n) if n else bounds == []
    sizes = [e - s for s, e in bounds]
    assert all(0 < size <= 256 for size in sizes)
    full = sizes[:-1]  # the last slice holds what is left
    want = [16]
    while len(want) < len(full):
        want.append(min(256, math.ceil(want[-1] * growth)))
    assert full == want[: len(full)]


@pytest.mark.parametrize("n", [0, 1, 100, 255, 256, 257, 1000, 4000])
def test_a_taper_ends_the_slices_with_its_sizes_and_covers_everything(n):
    taper = (128, 64, 32, 16)
    bounds = encode_slices(n, first=16, most=256, growth=1.5, taper=taper)
    assert bounds == encode_slices(n, first=16, most=256, growth=1.5), "the default taper"
    assert [s for s, _ in bounds[1:]] == [e for _, e in bounds[:-1]], "contiguous"
    assert (bounds[0][0], bounds[-1][1]) == (0, n) if n else bounds == []
    sizes = [e - s for s, e in bounds]
    if n > 16 + sum(taper):
        assert sizes[-4:] == list(taper)
        assert bounds[:-4] == encode_slices(n - sum(taper), first=16, most=256, growth=1.5, taper=())
    else:  # too few pairs for a taper: the slices are those without one
        assert bounds == encode_slices(n, first=16, most=256, growth=1.5, taper=())
