"""The one child-process helper: handshake, answers in order, errors forwarded, death and slow starts reported."""

from __future__ import annotations

import sys

import pytest

from crossrank.core.tokenize import PairEncoder
from crossrank.runtime.child import Child, ChildError, start_children

pytestmark = pytest.mark.slow  # starts processes


def _spec(tokenizer, **over):  # type: ignore[no-untyped-def]
    encoder = PairEncoder(tokenizer, max_length=48)
    return {"tokenizer": tokenizer, "max_length": 48, "query_max_length": encoder.query_max_length,
            "fast_join": encoder.fast_join, "chunk_overlap": 8, **over}


def test_answers_come_back_in_order_and_errors_as_the_childs_own(tokenizer_for_tests) -> None:  # type: ignore[no-untyped-def]
    encoder = PairEncoder(tokenizer_for_tests, max_length=48)
    child = Child("tokenizer", _spec(tokenizer_for_tests), name="test child")
    try:
        assert child.wait_ready(60) is None
        batches = [[("query", f"passage {i} " * (i % 7 + 1))] * (i + 1) for i in range(12)]
        futures = [child.request((pairs, "truncate")) for pairs in batches]
        failing = child.request(([("query", None)], "truncate"))
        after = child.request((batches[0], "truncate"))
        assert [f.result(30) for f in futures] == [encoder.encode(p) for p in batches]
        with pytest.raises(TypeError):
            failing.result(30)
        assert after.result(30) == encoder.encode(batches[0]), "the child goes on after a failure"
        assert child.owed == 0 and child.alive
    finally:
        child.close()


def test_a_child_that_cannot_set_up_raises_its_error(tokenizer_for_tests) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KeyError, match="max_length"):
        start_children("tokenizer", [{"tokenizer": tokenizer_for_tests}], ["broken child"], 60)


def test_a_child_that_exits_at_once_fails_the_start(monkeypatch: pytest.MonkeyPatch, tokenizer_for_tests) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "executable", "/bin/sh")  # `sh -m ...`: an unknown option, exit at once
    with pytest.raises(ChildError, match="exit code"):
        start_children("tokenizer", [_spec(tokenizer_for_tests)], ["test child"], 60)


def test_a_dead_child_fails_what_it_owes_and_every_later_request(tokenizer_for_tests) -> None:  # type: ignore[no-untyped-def]
    child = Child("tokenizer", _spec(tokenizer_for_tests), name="test child")
    try:
        child.wait_ready(60)
        child._proc.kill()
        child._proc.wait()
        with pytest.raises(ChildError, match=r"test child stopped \(exit code -9\)"):
            child.request(([("q", "p")], "truncate")).result(30)
        assert not child.alive
        with pytest.raises(ChildError, match="stopped"):
            child.request(([("q", "p")], "truncate")).result(30)
    finally:
        child.close()
