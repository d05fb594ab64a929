"""Worker processes (one per device, each a single-device Reranker): same scores as one device, clear failures."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crossrank import Reranker
from crossrank.core.settings import ModelSettings
from crossrank.core.tokenize import EncodedPair
from crossrank.engine import Engine
from crossrank.runtime.processes import ProcessWorkers, WorkerProcessError, pick_child, slice_work
from crossrank.testing import generated_sentences

TEXTS = list(generated_sentences(300, seed=21))
# Many tokenisation slices (16, 24, 36, ... then 256 at a time), so both children get several.
PAIRS = [(TEXTS[i % 5], TEXTS[(i * 13) % len(TEXTS)]) for i in range(1300)]


@pytest.fixture(scope="module")
def in_processes(tiny_model_dir: Path) -> Reranker:
    reranker = Reranker(str(tiny_model_dir), devices="cpu,cpu", max_batch_tokens=512)  # processes: the default
    yield reranker  # type: ignore[misc]
    reranker.close()


def test_processes_score_exactly_like_one_device(tiny_model_dir: Path, in_processes: Reranker) -> None:
    one = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512)
    assert in_processes.processes is not None and in_processes.processes.size == 2
    assert in_processes.pool is None, "no in-process replicas with worker processes"
    assert in_processes.describe()["workers"] == "processes"
    # This process keeps the tokenizer only (its tokenizer processes tokenise the slices); the children report the
    # backend they chose.
    assert in_processes.model is None and in_processes.backend is None
    assert in_processes.tokenizer_pool is not None and in_processes.describe()["tokenizer_processes"] >= 2
    assert in_processes.describe()["backend"] == one.describe()["backend"] == one.settings.backend
    seen: list[tuple[int, int]] = []
    assert in_processes.score(PAIRS, normalize=False, progress=lambda *d: seen.append(d)) == \
        one.score(PAIRS, normalize=False)
    assert seen[-1] == (len(PAIRS), len(PAIRS)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    query = "which city is the capital"
    assert in_processes.rerank(query, TEXTS, top_k=20) == one.rerank(query, TEXTS, top_k=20)
    # Long passages split into windows: the children return each window's logit and the parent keeps the best.
    assert in_processes.rerank(query, TEXTS, long_passages="chunk") == one.rerank(query, TEXTS, long_passages="chunk")
    assert in_processes.score([]) == []


def test_processes_without_a_tapered_end_score_exactly_like_one_device(tiny_model_dir: Path, in_processes: Reranker,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import crossrank.reranker as reranker_module

    assert [e - s for s, e in reranker_module.encode_slices(len(PAIRS))][-4:] == [128, 64, 32, 16]  # the default
    monkeypatch.setattr(reranker_module, "ENCODE_TAPER", ())
    assert [e - s for s, e in reranker_module.encode_slices(len(PAIRS))][-2:] == [256, 16]
    one = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512)
    assert in_processes.score(PAIRS, normalize=False) == one.score(PAIRS, normalize=False)
    one.close()


def test_processes_that_tokenise_their_own_slices_score_exactly_like_one_device(tiny_model_dir: Path) -> None:
    # No tokenizer processes (or where they cannot start): each worker process tokenises the texts it is sent.
    many = Reranker(str(tiny_model_dir), devices="cpu,cpu", max_batch_tokens=512, tokenizer_processes=0)
    one = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512)
    try:
        assert many.processes is not None and many.tokenizer_pool is None
        assert many.score(PAIRS, normalize=False) == one.score(PAIRS, normalize=False)
        query = "which city is the capital"
        assert many.rerank(query, TEXTS, long_passages="chunk") == one.rerank(query, TEXTS, long_passages="chunk")
    finally:
        many.close()
        one.close()


def test_the_next_slice_goes_to_the_child_with_least_work_queued_among_those_with_room() -> None:
    assert pick_child([2, 2], [900, 300], limit=3) == 1  # both have room: the one that will finish first
    assert pick_child([1, 2], [900, 300], limit=3) == 1  # least work, not fewest slices
    assert pick_child([3, 0], [0, 900], limit=3) == 1  # the other is full
    assert pick_child([2, 2, 2], [300, 300, 300], limit=3) == 0  # a tie: the first
    assert pick_child([1, 2], [300, 300], limit=3) == 0  # the same work: fewest slices
    assert pick_child([3, 3], [0, 0], limit=3) is None  # all full: wait for an answer
    encoded = [EncodedPair([0, 5, 6, 2], None, 0, 0), EncodedPair([0, 7, 2], None, 1, 0)]
    assert slice_work(("encoded", encoded)) == 7  # tokens, where tokenised already
    assert slice_work(("pairs", [("q", "p")] * 5, "truncate")) == 5  # else pairs


def test_a_failing_slice_raises_its_error_and_the_workers_stay_usable(in_processes: Reranker) -> None:
    workers = in_processes.processes
    assert workers is not None
    with pytest.raises(ValueError, match="long_passages must be one of"):
        workers.score_slices([("pairs", PAIRS[start:start + 10], "bogus") for start in (0, 10, 20)])
    assert len(in_processes.score(PAIRS[:40])) == 40


class Stop(Exception):
    pass


def test_an_interrupted_call_leaves_the_workers_usable(tiny_model_dir: Path, in_processes: Reranker) -> None:
    # Ctrl-C, or a progress callback that raises, between messages: slices are still owed by the children. The next
    # call takes those first, so its answers are its own.
    def stop_early(done: int, _total: int) -> None:
        if done > 100:
            raise Stop

    with pytest.raises(Stop):
        in_processes.score(PAIRS, progress=stop_early)
    workers = in_processes.processes
    assert workers is not None and sum(workers._owed) > 0
    one = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512)
    assert in_processes.score(PAIRS[:300], normalize=False) == one.score(PAIRS[:300], normalize=False)
    assert sum(workers._owed) == 0
    one.close()


def test_a_child_that_cannot_load_its_model_fails_the_start(tmp_path: Path) -> None:
    settings = ModelSettings(model=str(tmp_path / "no-such-model"), device="cpu")
    with pytest.raises(Exception, match="no-such-model"):
        ProcessWorkers(settings, ["cpu"])


def test_a_child_that_dies_at_once_fails_the_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import crossrank.runtime.processes as processes

    monkeypatch.setattr(processes.sys, "executable", "/bin/sh")  # `sh -m ...`: an unknown option, exit at once
    with pytest.raises(WorkerProcessError, match="exit code"):
        ProcessWorkers(ModelSettings(model=str(tmp_path), device="cpu"), ["cpu"])


def test_a_killed_child_gives_a_clear_error(tiny_model_dir: Path) -> None:
    reranker = Reranker(str(tiny_model_dir), devices="cpu,cpu", workers="processes")
    try:
        assert reranker.processes is not None
        reranker.processes._procs[1].kill()
        reranker.processes._procs[1].wait()
        with pytest.raises(WorkerProcessError, match=r"stopped|gone"):
            reranker.score(PAIRS[:200])
        with pytest.raises(WorkerProcessError, match="unusable"):
            reranker.score(PAIRS[:10])
    finally:
        reranker.close()


def test_a_script_without_a_main_guard_works(tiny_model_dir: Path, tmp_path: Path) -> None:
    # multiprocessing's spawn would run this script again in each child; the children here never import it.
    script = tmp_path / "score.py"
    script.write_text(textwrap.dedent(f"""
        from crossrank import Reranker
        r = Reranker({str(tiny_model_dir)!r}, devices="cpu,cpu", workers="processes")
        print("scores", len(r.score([("a query", "a passage")] * 50)))
        r.close()
    """), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("scores 50") == 1


def test_bad_workers_value_and_the_engine_refuse_clearly(tiny_model_dir: Path, in_processes: Reranker) -> None:
    with pytest.raises(ValueError, match="workers must be one of"):
        Reranker(str(tiny_model_dir), device="cpu", workers="fork")
    with pytest.raises(ValueError, match="workers='threads'"):
        Engine(in_processes)


def test_one_device_with_processes_runs_in_process(tiny_model_dir: Path) -> None:
    reranker = Reranker(str(tiny_model_dir), device="cpu", workers="processes")
    assert reranker.processes is None and dataclasses.asdict(reranker.settings)["devices"] == ""
    reranker.close()


def test_auto_falls_back_to_threads_where_processes_are_not_supported(tiny_model_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import crossrank.runtime.processes as processes

    monkeypatch.setattr(processes, "SUPPORTED", False)  # as on Windows: no pass_fds
    reranker = Reranker(str(tiny_model_dir), devices="cpu,cpu", max_batch_tokens=512, tokenizer_processes=0)
    try:
        assert reranker.processes is None and reranker.pool is not None
        assert reranker.describe()["workers"] == "threads"
    finally:
        reranker.close()
    with pytest.raises(WorkerProcessError, match="POSIX"):
        Reranker(str(tiny_model_dir), devices="cpu,cpu", workers="processes")
