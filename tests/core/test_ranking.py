import math

import pytest

from crossrank.core.errors import ScoreError
from crossrank.core.ranking import aggregate_chunks, finalize, rank, sigmoid


def test_sigmoid_is_stable_at_extremes():
    assert sigmoid(0.0) == 0.5
    assert sigmoid(800.0) == 1.0
    assert sigmoid(-800.0) == 0.0
    assert abs(sigmoid(2.0) - 1 / (1 + math.exp(-2.0))) < 1e-15


def test_rank_sorts_best_first_stable_and_cuts_top_k():
    results = rank([0.1, 2.0, 0.1, -1.0], ["a", "b", "c", "d"])
    assert [r.index for r in results] == [1, 0, 2, 3]
    assert [r.text for r in results] == ["b", "a", "c", "d"]
    assert results[0].raw_score == 2.0 and results[0].score == sigmoid(2.0)
    assert [r.index for r in rank([0.1, 2.0, 0.3], ["a", "b", "c"], top_k=2)] == [1, 2]
    with pytest.raises(ValueError, match="top_k"):
        rank([1.0], ["a"], top_k=0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_raise(bad):
    with pytest.raises(ScoreError, match="NaN or infinite"):
        rank([0.0, bad], ["a", "b"])
    with pytest.raises(ScoreError):
        finalize([bad], normalize=True)


def test_finalize_normalises_only_when_asked():
    assert finalize([0.0, 1.0], normalize=False) == [0.0, 1.0]
    assert finalize([0.0], normalize=True) == [0.5]


def test_aggregate_chunks_keeps_best_window():
    best, which = aggregate_chunks([0, 0, 0, 1], [0, 1, 2, 0], [0.1, 0.9, 0.5, -2.0], 2)
    assert best == [0.9, -2.0]
    assert which == [1, 0]
    with pytest.raises(ValueError):
        aggregate_chunks([0], [0], [1.0], 2)
