"""``crossrank eval``: what reranking buys on a retrieval benchmark (first stage vs reranked, with significance)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crossrank.cli import options as opt
from crossrank.core.settings import DEFAULT_MODEL, ModelSettings

_D = ModelSettings()

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from crossrank.eval.datasets import Dataset


def eval_command(
    dataset: Annotated[str, typer.Argument(
        help="A folder in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv) or a BEIR dataset name "
             "(scifact, nfcorpus, ...), downloaded once into the data cache.")],
    models: Annotated[list[str] | None, typer.Argument(
        help="With --compare: the rerankers to put side by side (model names or folders).", show_default=False)] = None,
    first_stage: Annotated[str, typer.Option(
        "--first-stage", envvar="CROSSRANK_FIRST_STAGE",
        help="bm25 (bm25s with a stemmer), a TREC run file path, or dense:MODEL (a sentence-transformers bi-encoder).")
    ] = "bm25",
    top_k: Annotated[int, typer.Option("--top-k", min=1, envvar="CROSSRANK_TOP_K",
                                       help="First-stage candidates reranked per query.")] = 100,
    model: opt.Model = DEFAULT_MODEL,
    metrics: Annotated[str, typer.Option("--metrics", envvar="CROSSRANK_METRICS",
                                         help="Comma-separated ranx metrics; the first one drives wins/losses "
                                              "and the chart.")
                       ] = "ndcg@10,mrr@10,recall@100",
    output: Annotated[Path, typer.Option("--output", envvar="CROSSRANK_OUTPUT",
                                         help="Folder for report.json, report.png and the runs as TREC files.")
                      ] = Path("report"),
    compare: Annotated[bool, typer.Option("--compare", envvar="CROSSRANK_COMPARE",
                                          help="Rerank with every model listed after DATASET, in one table.")
                       ] = False,
    split: Annotated[str, typer.Option("--split", envvar="CROSSRANK_SPLIT", help="Which qrels/<split>.tsv to use.")
                     ] = "test",
    language: Annotated[str, typer.Option("--language", envvar="CROSSRANK_LANGUAGE",
                                          help="BM25 stemmer and stopwords language (none where it has no stemmer).")
                        ] = "english",
    max_queries: Annotated[int | None, typer.Option("--max-queries", min=1, envvar="CROSSRANK_MAX_QUERIES",
                                                    help="Evaluate only the first N judged queries (a quick look).")
                           ] = None,
    cache: Annotated[Path | None, typer.Option("--cache", envvar="CROSSRANK_CACHE",
                                               help="sqlite file of scored pairs; default OUTPUT/scores.sqlite. "
                                                    "Resumes an interrupted run.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", envvar="CROSSRANK_DATA_DIR",
                                                  help="Cache of downloaded BEIR datasets "
                                                       "(default ~/.cache/crossrank/datasets).")] = None,
    device: opt.Device = _D.device,
    dtype: opt.Dtype = _D.dtype,
    max_length: opt.MaxLength = _D.max_length,
    max_batch_tokens: opt.MaxBatchTokens = _D.max_batch_tokens,
    models_dir: opt.ModelsDir = _D.models_dir,
) -> None:
    """Rerank a first stage's top-k on a retrieval benchmark and report what it changed.

    Example: crossrank eval scifact --first-stage bm25 --top-k 100 --model BAAI/bge-reranker-v2-m3
    """
    from rich.console import Console

    from crossrank.eval.metrics import parse_metrics

    console = Console(stderr=True)
    if compare and not models:
        raise typer.BadParameter("--compare needs the models to compare after DATASET", param_hint="--compare")
    if models and not compare:
        raise typer.BadParameter(f"extra arguments {models}: to compare several models, add --compare")
    try:
        metric_names = parse_metrics(metrics)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--metrics") from exc
    rerankers = list(models) if compare and models else [model]
    model_options = {"device": device, "dtype": dtype, "max_length": max_length,
                     "max_batch_tokens": max_batch_tokens, "models_dir": models_dir}
    report = run_evaluation(
        console, dataset_spec=dataset, first_stage=first_stage, top_k=top_k, rerankers=rerankers,
        metrics=metric_names, output=output, split=split, language=language, max_queries=max_queries,
        cache_path=cache or output / "scores.sqlite", data_dir=data_dir, model_options=model_options,
    )
    from crossrank.eval.report import render_table

    Console().print(render_table(report))
    console.print(f"wrote {output / 'report.json'}, {output / 'report.png'} and the runs as TREC files in {output}")


def _progress(console: Console) -> Progress:
    from rich import progress as p


    return p.Progress(p.TextColumn("{task.description}"), p.BarColumn(), p.MofNCompleteColumn(),
                      p.TimeElapsedColumn(), p.TimeRemainingColumn(), console=console)


def _load_dataset(console: Console, spec: str, split: str, data_dir: Path | None) -> Dataset:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from crossrank.eval.datasets import DatasetNotFoundError, load_dataset

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console) as bar:
        task = bar.add_task(f"downloading {spec}", total=None, visible=False)

        def on_bytes(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, visible=True)

        try:
            return load_dataset(spec, cache_dir=data_dir, split=split, progress=on_bytes)
        except DatasetNotFoundError as exc:
            raise typer.BadParameter(str(exc), param_hint="DATASET") from exc


def run_evaluation(console: Console, *, dataset_spec: str, first_stage: str, top_k: int, rerankers: list[str],
                   metrics: list[str], output: Path, split: str, language: str, max_queries: int | None,
                   cache_path: Path, data_dir: Path | None, model_options: dict[str, Any]) -> dict[str, Any]:
    """Load, retrieve, rerank with each model, measure, write the outputs; returns the report."""
    from dataclasses import replace

    from crossrank import Reranker
    from crossrank.eval.cache import ScoreCache
    from crossrank.eval.first_stage import first_stage_run
    from crossrank.eval.metrics import evaluate_per_query
    from crossrank.eval.report import SystemResult, build_report, write_outputs
    from crossrank.eval.rerank import rerank_run

    data = _load_dataset(console, dataset_spec, split, data_dir)
    if max_queries is not None:
        keep = list(data.queries)[:max_queries]
        data = replace(data, queries={q: data.queries[q] for q in keep}, qrels={q: data.qrels[q] for q in keep})
    console.print(f"{data.name}: {len(data.corpus):,} documents, {len(data.queries):,} judged queries ({data.path})")

    with _progress(console) as bar:
        tasks: dict[str, Any] = {}

        def on_stage(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{first_stage}: {phase}", total=total)
            bar.update(tasks[phase], completed=done, total=total)

        began = time.perf_counter()
        device = None if model_options["device"] == "auto" else model_options["device"]
        candidates = first_stage_run(first_stage, data, top_k, language=language, device=device, progress=on_stage)
        stage_seconds = time.perf_counter() - began
    stage_name = first_stage if not Path(first_stage).is_file() else Path(first_stage).name
    base = SystemResult(stage_name, candidates, evaluate_per_query(data.qrels, candidates, metrics), stage_seconds)

    results = []
    with ScoreCache(cache_path) as cache:
        for name in rerankers:
            began = time.perf_counter()
            reranker = Reranker(name, **model_options)
            with _progress(console) as bar:
                task = bar.add_task(f"reranking with {name}", total=None)

                def on_pairs(done: int, total: int, bar: Progress = bar, task: Any = task) -> None:
                    bar.update(task, completed=done, total=total)

                reranked, stats = rerank_run(reranker, data, candidates, cache=cache, progress=on_pairs)
            console.print(f"{name}: {stats.scored:,} pairs scored, {stats.cached:,} from the cache ({cache_path})")
            results.append(SystemResult(name, reranked, evaluate_per_query(data.qrels, reranked, metrics),
                                        time.perf_counter() - began, stats, reranker.describe()))
            reranker.close()

    info = {"name": data.name, "path": str(data.path), "split": split, "documents": len(data.corpus),
            "queries": len(data.queries)}
    report = build_report(dataset=info, first_stage=base, rerankers=results, metrics=metrics, top_k=top_k)
    write_outputs(report, base, results, output)
    return report
