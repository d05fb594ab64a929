"""Tokenising in child processes (a Reranker with several devices): the same ids, in order, and clear failures."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import crossrank.runtime.tokenizer_pool as tokenizer_pool
from crossrank import Reranker
from crossrank.core.tokenize import PairEncoder
from crossrank.reranker import encode_slices
from crossrank.runtime.tokenizer_pool import TokenizerPool, default_processes
from crossrank.testing import generated_sentences

TEXTS = list(generated_sentences(300, seed=31))
PAIRS = [(TEXTS[i % 5], " ".join(TEXTS[(i * 7 + k) % len(TEXTS)] for k in range(1 + i % 9))) for i in range(1300)]


@pytest.fixture(scope="module")
def encoder(tokenizer_for_tests) -> PairEncoder:  # type: ignore[no-untyped-def]
    return PairEncoder(tokenizer_for_tests, max_length=48)


@pytest.fixture(scope="module")
def children(tokenizer_for_tests, encoder: PairEncoder) -> TokenizerPool:  # type: ignore[no-untyped-def]
    pool = TokenizerPool(tokenizer_for_tests, encoder, chunk_overlap=8, processes=2)
    yield pool  # type: ignore[misc]
    pool.close()


def test_the_children_encode_exactly_as_the_encoder_in_order(encoder: PairEncoder, children: TokenizerPool) -> None:
    bounds = encode_slices(len(PAIRS), first=16, most=128)
    assert len(bounds) > tokenizer_pool.AHEAD * children.size + 2
    want = [encoder.encode(PAIRS[start:end]) for start, end in bounds]
    assert list(children.encode_slices(PAIRS, bounds, "truncate")) == want
    want_chunks = [encoder.encode_chunked(PAIRS[start:end], overlap=8) for start, end in bounds]
    assert list(children.encode_slices(PAIRS, bounds, "chunk")) == want_chunks


def test_an_error_in_a_child_comes_back_and_the_pool_stays_usable(encoder: PairEncoder,
                                                                  children: TokenizerPool) -> None:
    bounds = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60)]
    bad = list(PAIRS[:60])
    bad[25] = ("query", None)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        list(children.encode_slices(bad, bounds, "truncate"))
    assert list(children.encode_slices(PAIRS, bounds, "truncate")) == [encoder.encode(PAIRS[s:e]) for s, e in bounds]


def test_a_caller_that_stops_early_leaves_the_children_in_step(encoder: PairEncoder, children: TokenizerPool) -> None:
    bounds = [(0, 100), (100, 200), (200, 300), (300, 400), (400, 500)]
    slices = children.encode_slices(PAIRS, bounds, "truncate")
    assert next(slices) == encoder.encode(PAIRS[:100])
    slices.close()  # answers for the slices already requested are still on their way
    assert list(children.encode_slices(PAIRS, bounds[2:], "truncate")) == [encoder.encode(PAIRS[s:e])
                                                                           for s, e in bounds[2:]]


def test_a_dead_child_is_started_again(tokenizer_for_tests, encoder: PairEncoder,  # type: ignore[no-untyped-def]
                                       caplog: pytest.LogCaptureFixture) -> None:
    pool = TokenizerPool(tokenizer_for_tests, encoder, chunk_overlap=8, processes=2)
    try:
        pool._children[1].proc.kill()
        pool._children[1].proc.wait()
        with caplog.at_level(logging.WARNING, logger="crossrank.runtime.tokenizer_pool"):
            got = list(pool.encode_slices(PAIRS, [(0, 50), (50, 60), (60, 70)], "truncate"))
        assert got == [encoder.encode(PAIRS[s:e]) for s, e in [(0, 50), (50, 60), (60, 70)]]
        assert "starting it again" in caplog.text
    finally:
        pool.close()


def test_default_processes_only_with_several_devices() -> None:
    assert default_processes(1, 64) == 0
    assert [default_processes(2, cpus) for cpus in (2, 16, 32, 64)] == [2, 4, 8, 8]
    with pytest.raises(ValueError, match="at least one process"):
        TokenizerPool(None, None, 0, processes=0)  # type: ignore[arg-type]


def test_several_devices_tokenise_in_the_children_with_the_same_scores(tiny_model_dir: Path) -> None:
    one = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512)
    many = Reranker(str(tiny_model_dir), devices="cpu,cpu", max_batch_tokens=512, workers="threads")
    threaded = Reranker(str(tiny_model_dir), devices="cpu,cpu", max_batch_tokens=512, tokenizer_processes=0,
                        workers="threads")
    try:
        assert one.tokenizer_pool is None and threaded.tokenizer_pool is None
        assert many.tokenizer_pool is not None and many.tokenizer_pool.size == default_processes(2)
        pairs = PAIRS[:700]
        want = one.score(pairs, normalize=False)
        assert many.score(pairs, normalize=False) == want
        assert threaded.score(pairs, normalize=False) == want
        chunked = one.rerank("vitamin D", TEXTS[:40], long_passages="chunk")
        assert many.rerank("vitamin D", TEXTS[:40], long_passages="chunk") == chunked
    finally:
        for r in (one, many, threaded):
            r.close()


def test_a_pool_that_cannot_start_leaves_tokenising_in_this_process(tiny_model_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import crossrank.reranker as reranker_module

    def broken(*args: object, **kwargs: object) -> TokenizerPool:
        raise tokenizer_pool.TokenizerProcessError("no processes here")

    monkeypatch.setattr(reranker_module, "TokenizerPool", broken)
    with caplog.at_level(logging.WARNING, logger="crossrank.reranker"):
        r = Reranker(str(tiny_model_dir), devices="cpu,cpu", max_batch_tokens=512, workers="threads")
    try:
        assert r.tokenizer_pool is None and "did not start" in caplog.text
        assert len(r.score(PAIRS[:50])) == 50
    finally:
        r.close()
