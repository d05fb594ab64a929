"""Several workers (one per device): batches go to whichever is free, results keep input order, scores are identical."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from crossrank import DeviceError, Reranker
from crossrank.core.tokenize import EncodedPair
from crossrank.engine import Engine
from crossrank.model.devices import resolve_devices
from crossrank.runtime.tokenizer_pool import default_processes
from crossrank.runtime.workers import WorkerPool, run_batches_on_pool
from crossrank.testing import generated_sentences

TEXTS = list(generated_sentences(300, seed=11))
# More pairs than one tokenisation slice of the Reranker (512), so slices overlap on the workers.
PAIRS = [(TEXTS[i % 7], TEXTS[(i * 11) % len(TEXTS)]) for i in range(2200)]


class RecordingBackend:
    """A stand-in model: the 'logit' of a sequence is the sum of its ids; records which thread ran each batch."""

    name = "recording"
    padded = True
    dtype = torch.float32

    def __init__(self, delay: float = 0.002) -> None:
        self.device = torch.device("cpu")
        self.delay = delay
        self.threads: set[str] = set()
        self.batches = 0

    def forward(self, batch: Sequence[EncodedPair]) -> torch.Tensor:
        time.sleep(self.delay)  # long enough that a second worker gets work meanwhile
        self.threads.add(threading.current_thread().name)
        self.batches += 1
        return torch.tensor([float(sum(p.input_ids)) for p in batch])


def _encoded(n: int) -> list[EncodedPair]:
    return [EncodedPair(input_ids=list(range(1 + i % 23)), token_type_ids=None, pair=i, chunk=0) for i in range(n)]


def test_pool_keeps_order_loses_nothing_and_uses_every_worker() -> None:
    backends = [RecordingBackend(), RecordingBackend()]
    pool = WorkerPool(backends)
    try:
        encoded = _encoded(500)
        seen: list[int] = []
        logits = run_batches_on_pool(pool, encoded, max_batch_tokens=64, progress=lambda done, _: seen.append(done))
    finally:
        pool.close()
    assert logits == [float(sum(e.input_ids)) for e in encoded]
    assert all(b.batches > 0 for b in backends), "both workers must have run batches"
    assert {t for b in backends for t in b.threads} == {t.name for t in pool._threads}
    assert seen == sorted(seen) and seen[-1] == len(encoded)


def test_pool_failure_reaches_the_caller_and_the_pool_keeps_working() -> None:
    pool = WorkerPool([RecordingBackend(0.0), RecordingBackend(0.0)])
    try:
        def boom(_backend: object) -> None:
            raise ValueError("bad batch")

        with pytest.raises(ValueError, match="bad batch"):
            pool.submit(boom).result()
        assert pool.submit(lambda backend: backend.device.type).result() == "cpu"
    finally:
        pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(lambda backend: None)


def test_resolve_devices() -> None:
    assert resolve_devices("cpu,cpu") == [torch.device("cpu")] * 2
    assert resolve_devices(["cpu", "cpu", "cpu"]) == [torch.device("cpu")] * 3
    if torch.cuda.is_available():
        assert resolve_devices("all") == [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        assert resolve_devices("0") == [torch.device("cuda", 0)]
    else:
        assert len(resolve_devices("all")) == 1
        with pytest.raises(DeviceError):
            resolve_devices("0,1")
    with pytest.raises(DeviceError):
        resolve_devices(" , ")


@pytest.fixture(scope="module")
def two_worker_reranker(tiny_model_dir: Path) -> Reranker:
    reranker = Reranker(str(tiny_model_dir), devices="cpu,cpu", max_batch_tokens=512, workers="threads")
    yield reranker  # type: ignore[misc]
    reranker.close()


def test_two_workers_score_exactly_like_one_device(tiny_model_dir: Path, two_worker_reranker: Reranker) -> None:
    one = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512)
    assert two_worker_reranker.pool is not None and two_worker_reranker.pool.size == 2
    assert two_worker_reranker.describe()["devices"] == ["cpu", "cpu"]
    assert two_worker_reranker.describe()["tokenizer_processes"] == default_processes(2)
    assert two_worker_reranker.score(PAIRS, normalize=False) == one.score(PAIRS, normalize=False)
    query = "which city is the capital"
    assert two_worker_reranker.rerank(query, TEXTS, top_k=20) == one.rerank(query, TEXTS, top_k=20)


def test_a_huge_passage_reaches_the_tokenizer_processes_cut(tiny_model_dir: Path, two_worker_reranker: Reranker,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pool = two_worker_reranker.tokenizer_pool
    assert pool is not None
    sent: list[int] = []
    encode_slices = pool.encode_slices

    def recording(pairs, bounds, mode):  # type: ignore[no-untyped-def]
        sent.extend(len(p) for _, p in pairs)
        return encode_slices(pairs, bounds, mode)

    monkeypatch.setattr(pool, "encode_slices", recording)
    huge = [("q", "word " * 2_000_000), ("q", "short")]  # 10 MB
    one = Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=512)
    assert two_worker_reranker.score(huge, normalize=False) == one.score(huge, normalize=False)
    assert max(sent) <= len(two_worker_reranker.encoder.cut_pairs(huge)[0][1]) < 100_000


def test_settings_round_trip_keeps_the_devices(two_worker_reranker: Reranker) -> None:
    assert two_worker_reranker.settings.devices == "cpu,cpu"
    again = Reranker.from_settings(two_worker_reranker.settings, workers="threads")
    try:
        assert again.pool is not None and again.pool.size == 2
    finally:
        again.close()


async def test_engine_over_two_workers_matches_the_library(two_worker_reranker: Reranker) -> None:
    engine = Engine(two_worker_reranker, max_batch_tokens=256)
    threads: list[str] = []
    engine.add_batch_listener(lambda _stats: threads.append(threading.current_thread().name))
    await engine.start(warm_up=False)
    queries = [f"query {i} capital city" for i in range(8)]
    try:
        outcomes = await asyncio.gather(*(engine.rerank(q, TEXTS[i * 30:(i + 1) * 30]) for i, q in enumerate(queries)))
    finally:
        await engine.stop()
    for i, (query, outcome) in enumerate(zip(queries, outcomes, strict=True)):
        expected = two_worker_reranker.rerank(query, TEXTS[i * 30:(i + 1) * 30])
        # Batches mix requests differently from the library's, so padding changes the last float bits only.
        assert [r.index for r in outcome.results] == [r.index for r in expected]
        assert [r.score for r in outcome.results] == pytest.approx([r.score for r in expected], abs=1e-6)
    assert set(threads) == {t.name for t in two_worker_reranker.pool._threads}  # type: ignore[union-attr]
