"""Several devices as worker processes (one per device, each a DeviceRuntime): one device's scores, clear failures."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crossrank import Reranker
from crossrank.core.settings import ModelSettings
from crossrank.engine import Engine
from crossrank.runtime.child import ChildError
from crossrank.runtime.processes import ProcessRuntime, pick_child
from crossrank.testing import generated_sentences

TEXTS = list(generated_sentences(300, seed=21))
# Many tokenisation slices (16, 24, 36, ... then 256 at a time), so both children get several.
PAIRS = [(TEXTS[i % 5], TEXTS[(i * 13) % len(TEXTS)]) for i in range(1300)]


@pytest.fixture(scope="module")
def two_devices(tiny_model_dir: Path) -> Reranker:
    reranker = Reranker(str(tiny_model_dir), devices="cpu,cpu", max_batch_tokens=512)
    yield reranker  # type: ignore[misc]
    reranker.close()


@pytest.fixture(scope="module")
def one_device(tiny_model_dir: Path) -> Reranker:
    reranker = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512)
    yield reranker  # type: ignore[misc]
    reranker.close()


@pytest.mark.slow
def test_processes_score_exactly_like_one_device(two_devices: Reranker, one_device: Reranker) -> None:
    assert isinstance(two_devices.runtime, ProcessRuntime)
    assert two_devices.describe()["devices"] == ["cpu", "cpu"]
    assert two_devices.describe()["tokenizer_processes"] >= 2
    assert two_devices.describe()["backend"] == one_device.describe()["backend"]
    seen: list[tuple[int, int]] = []
    assert two_devices.score(PAIRS, normalize=False, progress=lambda *d: seen.append(d)) == \
        one_device.score(PAIRS, normalize=False)
    assert seen[-1] == (len(PAIRS), len(PAIRS)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    query = "which city is the capital"
    assert two_devices.rerank(query, TEXTS, top_k=20) == one_device.rerank(query, TEXTS, top_k=20)
    # Long passages split into windows: the children return each window's logit and the parent keeps the best.
    assert two_devices.rerank(query, TEXTS, long_passages="chunk") == \
        one_device.rerank(query, TEXTS, long_passages="chunk")
    assert two_devices.score([]) == []


@pytest.mark.slow
def test_without_a_tapered_end_too(two_devices: Reranker, one_device: Reranker,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from crossrank.core import batching

    monkeypatch.setattr(batching, "ENCODE_TAPER", ())
    assert [e - s for s, e in batching.encode_slices(len(PAIRS))][-2:] == [256, 16]
    assert two_devices.score(PAIRS, normalize=False) == one_device.score(PAIRS, normalize=False)


@pytest.mark.slow
def test_without_tokenizer_processes_too(tiny_model_dir: Path, one_device: Reranker) -> None:
    many = Reranker(str(tiny_model_dir), devices="cpu,cpu", max_batch_tokens=512, tokenizer_processes=0)
    try:
        assert many.describe()["tokenizer_processes"] == 0
        assert many.score(PAIRS[:400], normalize=False) == one_device.score(PAIRS[:400], normalize=False)
    finally:
        many.close()


def test_the_next_submission_goes_to_the_child_with_least_work_queued_among_those_with_room() -> None:
    assert pick_child([2, 2], [900, 300], limit=3) == 1  # both have room: the one that will finish first
    assert pick_child([1, 2], [900, 300], limit=3) == 1  # least work, not fewest in flight
    assert pick_child([3, 0], [0, 900], limit=3) == 1  # the other is full
    assert pick_child([2, 2, 2], [300, 300, 300], limit=3) == 0  # a tie: the first
    assert pick_child([1, 2], [300, 300], limit=3) == 0  # the same work: fewest in flight
    assert pick_child([3, 3], [0, 0], limit=3) is None  # all full: wait for an answer


@pytest.mark.slow
def test_a_failing_submission_fails_its_future_and_the_children_stay_usable(two_devices: Reranker) -> None:
    encoded = two_devices.encode(PAIRS[:10])
    with pytest.raises(ValueError, match="max_batch_tokens must be at least 1"):
        two_devices.runtime.submit(encoded, max_batch_tokens=-1).result(60)
    assert len(two_devices.score(PAIRS[:40])) == 40


class Stop(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_call_leaves_the_children_usable(two_devices: Reranker, one_device: Reranker) -> None:
    # Ctrl-C, or a progress callback that raises: what was submitted is still answered, in the background.
    def stop_early(done: int, _total: int) -> None:
        if done > 100:
            raise Stop

    with pytest.raises(Stop):
        two_devices.score(PAIRS, progress=stop_early)
    assert two_devices.score(PAIRS[:300], normalize=False) == one_device.score(PAIRS[:300], normalize=False)


@pytest.mark.slow
def test_a_child_that_cannot_load_its_model_fails_the_start(tmp_path: Path) -> None:
    settings = ModelSettings(model="no-such-model", device="cpu")
    with pytest.raises(Exception, match=r"no-such-model|config"):
        ProcessRuntime(tmp_path / "no-such-model", settings, ["cpu", "cpu"])


@pytest.mark.slow
def test_a_killed_child_gives_a_clear_error(tiny_model_dir: Path) -> None:
    reranker = Reranker(str(tiny_model_dir), devices="cpu,cpu", tokenizer_processes=0)
    try:
        runtime = reranker.runtime
        assert isinstance(runtime, ProcessRuntime)
        runtime._children[1]._proc.kill()
        runtime._children[1]._proc.wait()
        with pytest.raises(ChildError, match=r"worker process for cpu stopped \(exit code -9\)"):
            reranker.score(PAIRS[:600])
    finally:
        reranker.close()


@pytest.mark.slow
def test_a_script_without_a_main_guard_works(tiny_model_dir: Path, tmp_path: Path) -> None:
    # multiprocessing's spawn would run this script again in each child; the children here never import it.
    script = tmp_path / "score.py"
    script.write_text(textwrap.dedent(f"""
        from crossrank import Reranker
        r = Reranker({str(tiny_model_dir)!r}, devices="cpu,cpu")
        print("scores", len(r.score([("a query", "a passage")] * 50)))
        r.close()
    """), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("scores 50") == 1


@pytest.mark.slow
async def test_the_engine_over_two_devices_matches_the_library(two_devices: Reranker, one_device: Reranker) -> None:
    engine = Engine(two_devices, max_batch_tokens=256)
    await engine.start(warm_up=False)
    queries = [f"query {i} capital city" for i in range(8)]
    try:
        outcomes = await asyncio.gather(*(engine.rerank(q, TEXTS[i * 30:(i + 1) * 30]) for i, q in enumerate(queries)))
    finally:
        await engine.stop()
    assert engine.stats().batches >= 2
    for i, (query, outcome) in enumerate(zip(queries, outcomes, strict=True)):
        expected = one_device.rerank(query, TEXTS[i * 30:(i + 1) * 30])
        # Batches mix requests differently from the library's, so padding changes the last float bits only.
        assert [r.index for r in outcome.results] == [r.index for r in expected]
        assert [r.score for r in outcome.results] == pytest.approx([r.score for r in expected], abs=1e-6)
