"""The Ray Data batch job: same scores as the library, every row exactly once, even when a worker dies."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from crossrank import Reranker
from crossrank.batch.files import read_output
from crossrank.batch.ray_job import RayJobOptions, RerankActor, run_ray
from crossrank.batch.table import ranks_by_query

pytest.importorskip("ray")
import ray.cloudpickle

# The dying actor below lives in this test module, which Ray's workers cannot import: ship it by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

class DieOnceActor(RerankActor):
    """Kills its whole worker process on the first batch it ever sees (across restarts: a flag file remembers)."""

    flag_file = ""  # set by the test; travels with the class, which is pickled by value

    def __call__(self, table):  # type: ignore[no-untyped-def]
        flag = Path(self.flag_file)
        if not flag.exists():
            flag.write_text(str(os.getpid()), encoding="utf-8")
            os._exit(1)
        return super().__call__(table)


def _check_against_library(out_dir: Path, rows: list[dict[str, object]], reranker: Reranker) -> None:
    out = read_output(out_dir)
    assert sorted(out.column("id").to_pylist()) == sorted(int(r["id"]) for r in rows)  # none lost, none twice
    by_id = {r["id"]: r for r in out.to_pylist()}
    pairs = [(str(r["query"]), str(r["passage"])) for r in rows]
    raw = reranker.score(pairs, normalize=False)
    # Ray cuts the rows into other batches than one library call, so only the last float bits may differ.
    assert [by_id[r["id"]]["raw_score"] for r in rows] == pytest.approx(raw, abs=1e-5)
    assert [by_id[r["id"]]["score"] for r in rows] == pytest.approx(reranker.score(pairs), abs=1e-6)
    got_raw = [by_id[r["id"]]["raw_score"] for r in rows]
    assert [by_id[r["id"]]["rank"] for r in rows] == ranks_by_query([q for q, _ in pairs], got_raw)


@pytest.mark.slow  # ~40 s on 2 cores: Ray worker start-up, an actor restart and the ranking shuffle
def test_ray_job_equals_library_and_survives_a_killed_worker(
    ray_local, tiny_reranker: Reranker, flat_parquet: Path, flat_rows: list[dict[str, object]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flag = tmp_path / "died-once"
    options = RayJobOptions(workers=1, cpus_per_worker=1, batch_rows=500, rank_partitions=2)
    monkeypatch.setattr(DieOnceActor, "flag_file", str(flag))
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    run_ray(tiny_reranker.settings, flat_parquet, tmp_path / "out", options, actor_class=DieOnceActor)
    assert flag.exists(), "the actor must have died once"
    _check_against_library(tmp_path / "out", flat_rows, tiny_reranker)
