"""``crossrank batch INPUT OUTPUT [--ray]``: score a corpus offline (registered in ``crossrank.cli.app``).

pyarrow (the ``batch`` extra) and ray (the ``ray`` extra) are imported inside the command, so ``crossrank --help``
works without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from crossrank.cli.console import err, friendly_errors, load_reranker, say
from crossrank.cli.options import model_options
from crossrank.core.settings import ModelSettings, env_var


@model_options(devices=True)
def batch(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Parquet or JSONL file (or folder) with 'query' "
                                               "and 'passage' columns, or 'query' and a list 'passages'.")],
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", help="Output folder: the input's rows plus score, "
                                           "raw_score and rank (per query), in part files.")],
    use_ray: Annotated[bool, typer.Option("--ray", envvar=env_var("ray"),
                                          help="Run as a Ray Data job on the Ray cluster (RAY_ADDRESS, or a local "
                                          "one) instead of on this machine.")] = False,
    raw: Annotated[bool, typer.Option("--raw-scores", envvar=env_var("raw_scores"),
                                      help="Put the raw logit in 'score' instead of the sigmoid.")] = False,
    output_format: Annotated[str, typer.Option("--format", envvar=env_var("batch_format"),
                                               help="parquet | jsonl.")] = "parquet",
    part_rows: Annotated[int, typer.Option(min=1, envvar=env_var("part_rows"),
                                           help="Local: input rows per part file (the unit of resuming).")] = 10_000,
    overwrite: Annotated[bool, typer.Option(envvar=env_var("overwrite"),
                                            help="Local: discard an existing output instead of resuming it.")] = False,
    workers: Annotated[int, typer.Option(min=0, envvar=env_var("ray_workers"),
                                         help="Ray: scoring actors (0: one per GPU, else one per CPU but one).")] = 0,
    gpus_per_worker: Annotated[float | None, typer.Option(envvar=env_var("gpus_per_worker"),
                                                          help="Ray: GPUs per actor (default 1 when the cluster "
                                                          "has GPUs, else 0).")] = None,
    cpus_per_worker: Annotated[float, typer.Option(envvar=env_var("cpus_per_worker"),
                                                   help="Ray: CPUs per actor.")] = 1.0,
    batch_rows: Annotated[int, typer.Option(min=1, envvar=env_var("batch_rows"),
                                            help="Ray: rows per batch handed to an actor.")] = 4096,
    *,
    settings: ModelSettings,
) -> None:
    """Score every (query, passage) row of INPUT into OUTPUT. Locally it is resumable: run the same command again
    after a crash and finished parts are kept."""
    from crossrank.batch.files import OUTPUT_FORMATS

    with friendly_errors():
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
        require_pyarrow()
        if not use_ray:
            _run_here(settings, input_path, output, part_rows=part_rows, normalize=not raw,
                      output_format=output_format, overwrite=overwrite)
            return
        from crossrank.batch.local import output_lock

        with output_lock(output):
            _run_with_ray(settings, input_path, output, RayJobSettings(workers, gpus_per_worker, cpus_per_worker,
                                                                        batch_rows, not raw, output_format))
        say(f"wrote {output}")


def require_pyarrow() -> None:
    """An ImportError naming the light extra that brings pyarrow, which every batch job reads and writes with."""
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise ImportError("crossrank batch needs pyarrow: pip install 'crossrank[batch]'") from exc


@dataclass(frozen=True)
class RayJobSettings:
    """The Ray-only options of the command, as they are given."""

    workers: int
    gpus_per_worker: float | None
    cpus_per_worker: float
    batch_rows: int
    normalize: bool
    output_format: str


def _run_here(settings: ModelSettings, input_path: Path, output: Path, **job: Any) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from crossrank.batch.files import count_rows
    from crossrank.batch.local import run_local

    count_rows(input_path)  # a missing or unreadable input is refused before the model loads
    reranker = load_reranker(settings)
    with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err) as bar:
        task = bar.add_task("scoring", total=None)
        summary = run_local(reranker, input_path, output, **job,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    resumed = f" ({summary.parts_skipped} of {summary.parts} parts kept from before)" if summary.parts_skipped \
        else ""
    say(f"wrote {summary.rows_out} rows to {output}{resumed}")


def _run_with_ray(settings: ModelSettings, input_path: Path, output: Path, job: RayJobSettings) -> None:
    try:
        import ray.data

        import ray
    except ImportError as exc:
        raise ImportError("--ray needs Ray Data: pip install 'crossrank[ray]'") from exc
    from crossrank.batch.ray_job import RayJobOptions, run_ray

    if not ray.is_initialized():
        ray.init()  # joins RAY_ADDRESS's cluster when set, else starts a local one
    options = RayJobOptions(workers=job.workers, gpus_per_worker=job.gpus_per_worker,
                            cpus_per_worker=job.cpus_per_worker, batch_rows=job.batch_rows, normalize=job.normalize,
                            output_format=job.output_format)
    run_ray(settings, input_path, output, options)
