"""Tokenising ahead of the device, in tokenizer processes or a thread: the same ids, in order, and clear failures."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from crossrank import Reranker
from crossrank.core.batching import encode_slices
from crossrank.core.tokenize import PairEncoder
from crossrank.runtime.tokenizers import AHEAD, TokenizerProcesses, default_processes, encoded_slices
from crossrank.testing import generated_sentences

TEXTS = list(generated_sentences(300, seed=31))
PAIRS = [(TEXTS[i % 5], " ".join(TEXTS[(i * 7 + k) % len(TEXTS)] for k in range(1 + i % 9))) for i in range(1300)]


@pytest.fixture(scope="module")
def encoder(tokenizer_for_tests) -> PairEncoder:  # type: ignore[no-untyped-def]
    return PairEncoder(tokenizer_for_tests, max_length=48)


@pytest.fixture(scope="module")
def children(tokenizer_for_tests, encoder: PairEncoder) -> TokenizerProcesses:  # type: ignore[no-untyped-def]
    processes = TokenizerProcesses(tokenizer_for_tests, encoder, chunk_overlap=8, processes=2)
    yield processes  # type: ignore[misc]
    processes.close()


@pytest.mark.slow
def test_the_children_encode_exactly_as_the_encoder_in_order(encoder: PairEncoder,
                                                             children: TokenizerProcesses) -> None:
    bounds = encode_slices(len(PAIRS), first=16, most=128)
    assert len(bounds) > AHEAD * children.size + 2
    want = [encoder.encode(PAIRS[start:end]) for start, end in bounds]
    assert list(encoded_slices(children.submit, PAIRS, bounds, "truncate", children.ahead)) == want
    want_chunks = [encoder.encode_chunked(PAIRS[start:end], overlap=8) for start, end in bounds]
    assert list(encoded_slices(children.submit, PAIRS, bounds, "chunk", children.ahead)) == want_chunks


@pytest.mark.slow
def test_an_error_in_a_child_comes_back_and_the_children_stay_usable(encoder: PairEncoder,
                                                                     children: TokenizerProcesses) -> None:
    bounds = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60)]
    bad = list(PAIRS[:60])
    bad[25] = ("query", None)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        list(encoded_slices(children.submit, bad, bounds, "truncate", children.ahead))
    got = list(encoded_slices(children.submit, PAIRS, bounds, "truncate", children.ahead))
    assert got == [encoder.encode(PAIRS[s:e]) for s, e in bounds]


@pytest.mark.slow
def test_a_caller_that_stops_early_leaves_the_children_in_step(encoder: PairEncoder,
                                                               children: TokenizerProcesses) -> None:
    bounds = [(0, 100), (100, 200), (200, 300), (300, 400), (400, 500)]
    slices = encoded_slices(children.submit, PAIRS, bounds, "truncate", children.ahead)
    assert next(slices) == encoder.encode(PAIRS[:100])
    slices.close()  # answers for the slices already requested are still on their way
    got = list(encoded_slices(children.submit, PAIRS, bounds[2:], "truncate", children.ahead))
    assert got == [encoder.encode(PAIRS[s:e]) for s, e in bounds[2:]]


@pytest.mark.slow
def test_a_dead_child_is_started_again(tokenizer_for_tests, encoder: PairEncoder,  # type: ignore[no-untyped-def]
                                       caplog: pytest.LogCaptureFixture) -> None:
    processes = TokenizerProcesses(tokenizer_for_tests, encoder, chunk_overlap=8, processes=2)
    try:
        processes._children[1]._proc.kill()
        processes._children[1]._proc.wait()
        bounds = [(0, 50), (50, 60), (60, 70)]
        with caplog.at_level(logging.WARNING, logger="crossrank.runtime.tokenizers"):
            got = list(encoded_slices(processes.submit, PAIRS, bounds, "truncate", processes.ahead))
        assert got == [encoder.encode(PAIRS[s:e]) for s, e in bounds]
        assert "starting it again" in caplog.text
    finally:
        processes.close()


def test_a_thread_tokenises_ahead_in_order(encoder: PairEncoder) -> None:
    bounds = encode_slices(300, first=16, most=64)
    with ThreadPoolExecutor(1) as thread:
        got = list(encoded_slices(lambda pairs, mode: thread.submit(encoder.encode_as, pairs, mode, 8), PAIRS, bounds,
                                  "truncate", ahead=2))
    assert got == [encoder.encode(PAIRS[s:e]) for s, e in bounds]


def test_default_processes_only_with_several_devices() -> None:
    assert default_processes(1, 64) == 0
    assert [default_processes(2, cpus) for cpus in (2, 16, 32, 64)] == [2, 4, 8, 8]
    with pytest.raises(ValueError, match="at least one process"):
        TokenizerProcesses(None, None, 0, processes=0)  # type: ignore[arg-type]


@pytest.mark.slow
def test_tokenizer_processes_that_cannot_start_leave_tokenising_to_a_thread(tiny_model_dir: Path,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    import crossrank.reranker as reranker_module

    def broken(*args: object, **kwargs: object) -> TokenizerProcesses:
        raise RuntimeError("no processes here")

    monkeypatch.setattr(reranker_module, "TokenizerProcesses", broken)
    with caplog.at_level(logging.WARNING, logger="crossrank.reranker"):
        r = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512, tokenizer_processes=2)
    try:
        assert r.describe()["tokenizer_processes"] == 0 and "did not start" in caplog.text
        assert len(r.score(PAIRS[:50])) == 50
    finally:
        r.close()


@pytest.mark.slow
def test_tokenizer_processes_give_one_devices_scores_and_get_huge_passages_cut(tiny_model_dir: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    one = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512)
    ahead = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512, tokenizer_processes=2)
    try:
        assert ahead.describe()["tokenizer_processes"] == 2 and one.describe()["tokenizer_processes"] == 0
        assert ahead.score(PAIRS[:700], normalize=False) == one.score(PAIRS[:700], normalize=False)
        chunked = one.rerank("vitamin D", TEXTS[:40], long_passages="chunk")
        assert ahead.rerank("vitamin D", TEXTS[:40], long_passages="chunk") == chunked
        sent: list[int] = []
        processes = ahead._tokenizer_processes
        assert processes is not None
        submit = processes.submit

        def recording(pairs, mode):  # type: ignore[no-untyped-def]
            sent.extend(len(p) for _, p in pairs)
            return submit(pairs, mode)

        monkeypatch.setattr(processes, "submit", recording)
        huge = [("q", "word " * 2_000_000), ("q", "short")]  # 10 MB
        assert ahead.score(huge, normalize=False) == one.score(huge, normalize=False)
        assert max(sent) <= len(ahead.encoder.cut_pairs(huge)[0][1]) < 100_000
    finally:
        one.close()
        ahead.close()
