"""The Ray Data batch job: read → ``map_batches`` over an actor pool (one Reranker per GPU or CPU slot) → write.

Streaming end to end (Ray Data moves blocks through the pipeline and spills to disk), so the corpus need not fit in
memory. Actors are restarted and their unfinished batches retried when a worker dies (Ray Data's defaults for actor
pools: ``max_restarts=-1``, ``max_task_retries=-1``), so no row is lost or written twice. Flat input is ranked per
query by a ``groupby("query")`` shuffle after scoring; grouped input (a ``passages`` list per row) is ranked inside
each row and needs no shuffle.
Output row order is not the input's; join on your own id column (kept as is) or on ``(query, passage)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossrank.batch.files import OUTPUT_FORMATS, input_files
from crossrank.batch.table import FLAT, add_ranks, input_shape, score_table
from crossrank.core.settings import ModelSettings

if TYPE_CHECKING:
    import pyarrow as pa


class RerankActor:
    """One Ray Data actor: loads a :class:`crossrank.Reranker` once and scores the batches it is given."""

    def __init__(self, settings: ModelSettings, normalize: bool = True, long_passages: str | None = None) -> None:
        from crossrank.reranker import Reranker

        self.reranker = Reranker.from_settings(settings)
        self.normalize = normalize
        self.long_passages = long_passages

    def __call__(self, table: pa.Table) -> pa.Table:
        return score_table(self.reranker, table, normalize=self.normalize, long_passages=self.long_passages)


@dataclass(frozen=True)
class RayJobOptions:
    """``workers``: actors (0: one per GPU of the cluster, else one per CPU but one); ``gpus_per_worker`` /
    ``cpus_per_worker``: each actor's reservation; ``batch_rows``: rows handed to an actor at a time;
    ``rank_partitions``: partitions of the per-query ranking shuffle (flat input; fewer suits small jobs)."""

    workers: int = 0
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    batch_rows: int = 4096
    normalize: bool = True
    long_passages: str | None = None
    output_format: str = "parquet"
    rank_partitions: int | None = None  # partitions of the groupby("query") shuffle (None: Ray's default, 200)


def _read(path: Path) -> Any:
    import ray.data

    kind, _ = input_files(path)
    if kind == "parquet":
        return ray.data.read_parquet(str(path))
    return ray.data.read_json(str(path), lines=True, file_extensions=["jsonl", "json", "ndjson"])


def plan(options: RayJobOptions, settings: ModelSettings) -> tuple[int, float, float, ModelSettings]:
    """Actors, GPUs and CPUs per actor, and the settings each actor loads (device follows the reservation)."""
    import ray

    resources = ray.cluster_resources()
    gpus = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if resources.get("GPU") else 0.0)
    if options.workers > 0:
        workers = options.workers
    elif gpus > 0:
        workers = max(1, int(resources.get("GPU", 1) // gpus))
    else:
        # Leave one CPU slot to the read and write tasks, or the pipeline cannot move.
        workers = max(1, int(resources.get("CPU", 2) // options.cpus_per_worker) - 1)
    # Ray sets CUDA_VISIBLE_DEVICES per actor; each actor sees its own GPU(s) as cuda:0…
    device = "cuda" if gpus > 0 else "cpu"
    return workers, gpus, options.cpus_per_worker, replace(settings, device=device, devices="")


def run_ray(settings: ModelSettings, input_path: Path, output: Path, options: RayJobOptions = RayJobOptions(),
            actor_class: type[RerankActor] = RerankActor) -> None:
    """Run the pipeline on the Ray cluster this process is connected to (``ray.init`` first; the command does)."""
    if options.output_format not in OUTPUT_FORMATS:
        raise ValueError(f"format must be one of {OUTPUT_FORMATS}, not {options.output_format!r}")
    dataset = _read(input_path)
    shape = input_shape(dataset.columns())
    workers, gpus, cpus, actor_settings = plan(options, settings)
    # Ray Data gives actor pools max_restarts=-1 and max_task_retries=-1 by default: a dead actor comes back
    # (reloading the model) and its unfinished batch runs again, so no row is lost or written twice (tested).
    scored = dataset.map_batches(
        actor_class,
        fn_constructor_kwargs={"settings": actor_settings, "normalize": options.normalize,
                               "long_passages": options.long_passages},
        batch_size=options.batch_rows,
        batch_format="pyarrow",
        concurrency=workers,
        num_cpus=cpus,
        **({"num_gpus": gpus} if gpus > 0 else {}),
    )
    if shape == FLAT:
        by_query = scored.groupby("query", num_partitions=options.rank_partitions)
        scored = by_query.map_groups(add_ranks, batch_format="pyarrow")
    if options.output_format == "parquet":
        scored.write_parquet(str(output))
    else:
        scored.write_json(str(output))
