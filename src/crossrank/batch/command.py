"""``crossrank batch INPUT OUTPUT [--ray]``: score a corpus offline (registered in ``crossrank.cli.app``).

pyarrow and ray are imported inside the command, so ``crossrank --help`` works without the ``ray`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crossrank.cli import options as opt
from crossrank.core.settings import DEFAULT_MODEL, ModelSettings, env_var

_D = ModelSettings()


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
    model: opt.Model = DEFAULT_MODEL,
    device: opt.Device = _D.device,
    devices: opt.Devices = _D.devices,
    dtype: opt.Dtype = _D.dtype,
    max_length: opt.MaxLength = _D.max_length,
    max_batch_tokens: opt.MaxBatchTokens = _D.max_batch_tokens,
    backend: opt.Backend = _D.backend,
    long_passages: opt.LongPassages = _D.long_passages,
    models_dir: opt.ModelsDir = _D.models_dir,
) -> None:
    """Score every (query, passage) row of INPUT into OUTPUT. Locally it is resumable: run the same command again
    after a crash and finished parts are kept."""
    from dataclasses import replace

    from crossrank.cli.app import err, friendly_errors, load_reranker

    settings = replace(opt.model_settings(model, device, dtype, max_length, max_batch_tokens, backend, long_passages,
                                          models_dir), devices=devices)
    with friendly_errors():
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ValueError("crossrank batch needs pyarrow: pip install 'crossrank[ray]'") from exc
        if use_ray:
            _run_with_ray(settings, input_path, output, not raw, output_format, workers, gpus_per_worker,
                          cpus_per_worker, batch_rows)
            err.print(f"wrote {output}")
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from crossrank.batch.local import run_local

        reranker = load_reranker(settings)
        with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err) as bar:
            task = bar.add_task("scoring", total=None)
            summary = run_local(reranker, input_path, output, part_rows=part_rows, normalize=not raw,
                                output_format=output_format, overwrite=overwrite,
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
        resumed = f" ({summary.parts_skipped} of {summary.parts} parts kept from before)" if summary.parts_skipped \
            else ""
        err.print(f"wrote {summary.rows_out} rows to {output}{resumed}")


def _run_with_ray(settings: ModelSettings, input_path: Path, output: Path, normalize: bool, output_format: str,
                  workers: int, gpus_per_worker: float | None, cpus_per_worker: float, batch_rows: int) -> None:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ValueError("--ray needs Ray: pip install 'crossrank[ray]'") from exc
    from crossrank.batch.ray_job import RayJobOptions, run_ray

    if not ray.is_initialized():
        ray.init()  # joins RAY_ADDRESS's cluster when set, else starts a local one
    options = RayJobOptions(workers=workers, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
                            batch_rows=batch_rows, normalize=normalize, output_format=output_format)
    run_ray(settings, input_path, output, options)
