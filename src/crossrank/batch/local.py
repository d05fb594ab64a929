"""The local batch job: score the input part by part on this machine, resumable after a crash or Ctrl-C.

Layout of OUTPUT (a folder)::

    OUTPUT/_batch.lock             held while a job writes here: a second job on the same folder is refused
    OUTPUT/_job.json               what this output is for (input, model, everything that changes a score); a
                                   restart with other settings is refused
    OUTPUT/_scored/part-00000.parquet …  stage 1: scored parts, each written atomically, skipped on restart
    OUTPUT/part-00000.parquet …   stage 2: the same rows with ``rank`` per query (flat input ranks need every part)
    OUTPUT/_SUCCESS                written last

A restart re-reads the input (cut into the same parts) and scores only the parts not yet in ``_scored``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossrank.batch.files import OUTPUT_FORMATS, count_rows, input_files, read_parts, read_table, write_table
from crossrank.batch.table import FLAT, input_shape, ranks_by_query, score_table

if TYPE_CHECKING:
    from crossrank.reranker import Reranker

LOCK_FILE = "_batch.lock"
JOB_FILE = "_job.json"
SCORED_DIR = "_scored"
SUCCESS_FILE = "_SUCCESS"
RowProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class LocalJobSummary:
    parts: int
    parts_skipped: int
    rows_in: int
    rows_out: int
    output: str


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold ``OUTPUT/_batch.lock`` (created with the folder) while a job writes there; a ValueError at once when
    another job holds it, so that two jobs never write parts into one folder."""
    from filelock import FileLock, Timeout

    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file; batch writes a folder of part files")
    output.mkdir(parents=True, exist_ok=True)
    lock = FileLock(output / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ValueError(f"output {output} is being written by another crossrank batch job; wait for it to end, "
                         "or choose another output folder") from None
    try:
        yield
    finally:
        lock.release()


def _job_identity(input_path: Path, part_rows: int, normalize: bool, reranker: Reranker, output_format: str,
                  long_passages: str | None) -> dict[str, Any]:
    """Everything that decides the output's rows: the input, how it is cut, and everything that changes a score."""
    _, files = input_files(input_path)
    info = reranker.describe()
    return {
        "input": str(input_path.resolve()), "input_bytes": sum(f.stat().st_size for f in files),
        "part_rows": part_rows, "normalize": normalize, "format": output_format, "model": info["model"],
        "model_path": info["path"], "dtype": info["dtype"], "backend": info["backend"],
        "max_length": info["max_length"], "query_max_length": info["query_max_length"],
        "long_passages": long_passages or info["long_passages"], "chunk_overlap": reranker.settings.chunk_overlap,
    }


def _clear(output: Path) -> None:
    """Empty ``output`` but for its lock, which this job holds."""
    for entry in output.iterdir():
        if entry.name != LOCK_FILE:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _prepare_output(output: Path, identity: dict[str, Any], overwrite: bool) -> None:
    job_file = output / JOB_FILE
    if overwrite:
        _clear(output)
    if any(p.name != LOCK_FILE for p in output.iterdir()):
        if not job_file.exists():
            raise ValueError(f"output {output} exists and is not a crossrank batch output; choose another folder")
        previous = json.loads(job_file.read_text(encoding="utf-8"))
        if previous != identity:
            changed = sorted(k for k in identity if previous.get(k) != identity[k])
            raise ValueError(f"output {output} holds a job with other settings ({', '.join(changed)}); "
                             "pass --overwrite to start again, or choose another output folder")
    (output / SCORED_DIR).mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(identity, indent=2), encoding="utf-8")


def run_local(
    reranker: Reranker,
    input_path: Path,
    output: Path,
    *,
    part_rows: int = 10_000,
    normalize: bool = True,
    output_format: str = "parquet",
    long_passages: str | None = None,
    overwrite: bool = False,
    progress: RowProgress | None = None,
) -> LocalJobSummary:
    """Score every row of ``input_path`` into the folder ``output``; resumes a job that stopped half way. The folder
    is locked meanwhile: a second job on it is refused."""
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"format must be one of {OUTPUT_FORMATS}, not {output_format!r}")
    identity = _job_identity(input_path, part_rows, normalize, reranker, output_format, long_passages)
    with output_lock(output):
        return _run_locked(reranker, input_path, output, identity, part_rows=part_rows, normalize=normalize,
                           output_format=output_format, long_passages=long_passages, overwrite=overwrite,
                           progress=progress)


def _run_locked(reranker: Reranker, input_path: Path, output: Path, identity: dict[str, Any], *, part_rows: int,
                normalize: bool, output_format: str, long_passages: str | None, overwrite: bool,
                progress: RowProgress | None) -> LocalJobSummary:
    if (output / SUCCESS_FILE).exists() and not overwrite and \
            json.loads((output / JOB_FILE).read_text(encoding="utf-8")) == identity:
        final = sorted(output.glob(f"part-*.{output_format}"))
        return LocalJobSummary(len(final), len(final), 0, sum(read_table(p).num_rows for p in final), str(output))
    (output / SUCCESS_FILE).unlink(missing_ok=True)
    _prepare_output(output, identity, overwrite)
    scored_dir = output / SCORED_DIR
    total = count_rows(input_path)
    done = skipped = parts = 0
    shape = None
    for number, table in enumerate(read_parts(input_path, part_rows)):
        parts += 1
        shape = shape or input_shape(table.column_names)
        target = scored_dir / f"part-{number:05d}.parquet"
        if target.exists():
            skipped += 1
        else:
            base = done

            def report(scored: int, of: int, base: int = base, rows: int = table.num_rows) -> None:
                if progress is not None:
                    progress(base + round(rows * scored / max(of, 1)), total)

            write_table(score_table(reranker, table, normalize=normalize, long_passages=long_passages,
                                    progress=report), target)
        done += table.num_rows
        if progress is not None:
            progress(done, total)
    rows_out = _finish(output, scored_dir, parts, shape == FLAT, output_format)
    return LocalJobSummary(parts, skipped, total, rows_out, str(output))


def _finish(output: Path, scored_dir: Path, parts: int, rank_across_parts: bool, output_format: str) -> int:
    """Stage 2: write the final parts (with ``rank`` across all rows of a query for flat input), then ``_SUCCESS``."""
    import pyarrow as pa

    scored = [scored_dir / f"part-{n:05d}.parquet" for n in range(parts)]
    ranks: list[int] | None = None
    if rank_across_parts:
        import pyarrow.parquet as pq

        # Only the two columns ranking needs are held in memory, not the passages.
        columns = [pq.read_table(p, columns=["query", "raw_score"]) for p in scored]
        ranks = ranks_by_query([q for t in columns for q in t.column("query").to_pylist()],
                               [v for t in columns for v in t.column("raw_score").to_pylist()])
    offset = rows = 0
    for number, path in enumerate(scored):
        table = read_table(path)
        if ranks is not None:
            table = table.append_column("rank", pa.array(ranks[offset:offset + table.num_rows], type=pa.int64()))
        offset += table.num_rows
        rows += table.num_rows
        write_table(table, output / f"part-{number:05d}.{output_format}")
    shutil.rmtree(scored_dir)
    (output / SUCCESS_FILE).write_text(json.dumps(asdict(LocalJobSummary(parts, 0, offset, rows, str(output)))),
                                       encoding="utf-8")
    return rows
