from hypothesis import given, settings
from hypothesis import strategies as st

from crossrank.core.batching import batch_cost, pack_batches, restore_order

lengths_st = st.lists(st.integers(min_value=1, max_value=600), max_size=200)


@settings(max_examples=300, deadline=None)
@given(lengths=lengths_st, budget=st.integers(min_value=1, max_value=5000), padded=st.booleans(),
       max_batch_size=st.one_of(st.none(), st.integers(min_value=1, max_value=64)))
def test_every_index_exactly_once_and_budget_holds(lengths, budget, padded, max_batch_size):
    batches = pack_batches(lengths, budget, padded=padded, max_batch_size=max_batch_size)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert b, "no empty batch"
        cost = batch_cost([lengths[i] for i in b], padded=padded)
        # over budget only when a single sequence alone is longer than the budget
        assert cost <= budget or len(b) == 1
        if max_batch_size is not None:
            assert len(b) <= max_batch_size


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
