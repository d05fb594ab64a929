"""The local batch job: same scores as the library, every row once, resumable after a crash."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from crossrank import Reranker
from crossrank.batch.files import read_output, read_parts
from crossrank.batch.local import SCORED_DIR, SUCCESS_FILE, run_local
from crossrank.batch.table import ranks_by_query
from crossrank.core.ranking import sigmoid


class Crash(Exception):
    pass


def test_read_parts_cuts_exact_parts_across_row_groups(flat_parquet: Path, flat_rows: list[dict[str, object]]) -> None:
    parts = list(read_parts(flat_parquet, 1000))
    assert [p.num_rows for p in parts] == [1000, 1000, 1000]
    assert [r for p in parts for r in p.column("id").to_pylist()] == [r["id"] for r in flat_rows]


def test_flat_job_equals_library(tiny_reranker: Reranker, flat_parquet: Path, flat_rows: list[dict[str, object]],
                                 tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    summary = run_local(tiny_reranker, flat_parquet, tmp_path / "out", part_rows=1000,
                        progress=lambda done, total: seen.append((done, total)))
    out = read_output(tmp_path / "out")
    assert summary.rows_out == out.num_rows == len(flat_rows)
    assert out.column("id").to_pylist() == [r["id"] for r in flat_rows]  # every row once, in input order
    pairs = [(str(r["query"]), str(r["passage"])) for r in flat_rows]
    # The job scores part by part; the library given the same parts gives bit-identical scores.
    parts = [pairs[i:i + 1000] for i in range(0, len(pairs), 1000)]
    assert out.column("raw_score").to_pylist() == [v for p in parts for v in tiny_reranker.score(p, normalize=False)]
    assert out.column("score").to_pylist() == pytest.approx([sigmoid(v) for v in out["raw_score"].to_pylist()])
    assert out.column("rank").to_pylist() == ranks_by_query([q for q, _ in pairs], out["raw_score"].to_pylist())
    assert (tmp_path / "out" / SUCCESS_FILE).exists() and not (tmp_path / "out" / SCORED_DIR).exists()
    assert seen[-1] == (len(flat_rows), len(flat_rows))


def test_grouped_jsonl_job_writes_jsonl(tiny_reranker: Reranker, grouped_jsonl: Path, tmp_path: Path) -> None:
    run_local(tiny_reranker, grouped_jsonl, tmp_path / "out", part_rows=7, output_format="jsonl")
    out = read_output(tmp_path / "out")
    groups = [json.loads(line) for line in grouped_jsonl.read_text(encoding="utf-8").splitlines()]
    assert out.num_rows == sum(len(g["passages"]) for g in groups)
    first = groups[0]
    rows = [r for r in out.to_pylist() if r["qid"] == first["qid"]]
    expected = tiny_reranker.rerank(first["query"], first["passages"])
    assert [r["passage"] for r in sorted(rows, key=lambda r: r["rank"])] == [e.text for e in expected]


def test_a_crashed_job_resumes_without_rescoring_finished_parts(
    tiny_reranker: Reranker, flat_parquet: Path, flat_rows: list[dict[str, object]], tmp_path: Path
) -> None:
    def crash_in_third_part(done: int, _total: int) -> None:
        if done > 2000:
            raise Crash

    out_dir = tmp_path / "out"
    with pytest.raises(Crash):
        run_local(tiny_reranker, flat_parquet, out_dir, part_rows=1000, progress=crash_in_third_part)
    assert sorted(p.name for p in (out_dir / SCORED_DIR).iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert not (out_dir / SUCCESS_FILE).exists()

    scored: list[int] = []
    original = tiny_reranker.score

    def counting_score(pairs, **kwargs):  # type: ignore[no-untyped-def]
        scored.append(len(pairs))
        return original(pairs, **kwargs)

    tiny_reranker.score = counting_score  # type: ignore[method-assign]
    try:
        summary = run_local(tiny_reranker, flat_parquet, out_dir, part_rows=1000)
    finally:
        del tiny_reranker.score
    assert summary.parts_skipped == 2 and scored == [1000]
    resumed = read_output(out_dir)
    clean = run_local(tiny_reranker, flat_parquet, tmp_path / "clean", part_rows=1000)
    assert clean.parts_skipped == 0
    assert resumed.equals(read_output(tmp_path / "clean"))
    assert resumed.column("id").to_pylist() == [r["id"] for r in flat_rows]


def test_other_settings_are_refused_on_an_existing_output(tiny_reranker: Reranker, flat_rows: list[dict[str, object]],
                                                          tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    small = tmp_path / "small.parquet"
    pq.write_table(pa.Table.from_pylist(flat_rows[:200]), small)
    run_local(tiny_reranker, small, tmp_path / "out", part_rows=100)
    with pytest.raises(ValueError, match="part_rows"):
        run_local(tiny_reranker, small, tmp_path / "out", part_rows=50)
    again = run_local(tiny_reranker, small, tmp_path / "out", part_rows=50, overwrite=True)
    assert again.parts == 4 and again.parts_skipped == 0
    done = run_local(tiny_reranker, small, tmp_path / "out", part_rows=50)
    assert done.parts_skipped == 4 and done.rows_out == 200  # a finished job is not run again
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match="not a crossrank batch output"):
        run_local(tiny_reranker, small, tmp_path / "other")


@pytest.mark.slow  # starts a worker process per device
def test_a_job_on_two_devices_scores_like_one(tiny_reranker: Reranker, flat_parquet: Path, tmp_path: Path) -> None:
    # Several devices: the library's worker processes (the default), the same slices, so the same scores.
    settings = dataclasses.replace(tiny_reranker.settings, devices="cpu,cpu")
    two = Reranker.from_settings(settings)
    try:
        assert two.describe()["devices"] == ["cpu", "cpu"]
        run_local(two, flat_parquet, tmp_path / "two", part_rows=1000)
    finally:
        two.close()
    run_local(tiny_reranker, flat_parquet, tmp_path / "one", part_rows=1000)
    one, many = read_output(tmp_path / "one"), read_output(tmp_path / "two")
    assert many.column("raw_score").to_pylist() == one.column("raw_score").to_pylist()
    assert many.column("rank").to_pylist() == one.column("rank").to_pylist()


def test_a_second_job_on_a_locked_output_is_refused(tiny_reranker: Reranker, flat_parquet: Path,
                                                    tmp_path: Path) -> None:
    from crossrank.batch.local import output_lock

    out = tmp_path / "out"
    with output_lock(out), pytest.raises(ValueError, match="being written by another crossrank batch job"):
        run_local(tiny_reranker, flat_parquet, out)
    run_local(tiny_reranker, flat_parquet, out)  # free again once the first job ends
    assert (out / "_SUCCESS").exists()


def test_a_resume_with_another_backend_is_refused(tiny_model_dir: Path, flat_parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Reranker(str(tiny_model_dir), device="cpu", backend="padded") as padded:
        run_local(padded, flat_parquet, out, part_rows=5)
    (out / "_SUCCESS").unlink()
    with Reranker(str(tiny_model_dir), device="cpu", backend="packed") as packed, \
            pytest.raises(ValueError, match=r"other settings.*backend"):
        run_local(packed, flat_parquet, out, part_rows=5)
