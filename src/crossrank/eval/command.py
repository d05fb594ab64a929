"""``crossrank eval``: what reranking buys on a retrieval benchmark (first stage vs reranked, with significance).

Everything a user can get wrong (the model, the first stage, the metrics, the output folder, a missing extra) is
checked before the first stage's minutes of work; each mistake is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from crossrank.cli.console import fail, friendly_errors, say
from crossrank.cli.options import model_options
from crossrank.core.settings import DTYPES, Dtype, ModelSettings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from crossrank.eval.datasets import Dataset
    from crossrank.eval.report import SystemResult

EVAL_MODULES = {"bm25s": "bm25s", "Stemmer": "PyStemmer", "ranx": "ranx", "scipy": "scipy",
                "matplotlib": "matplotlib"}
"""Modules of the ``eval`` extra, by the package that brings each."""


@dataclass(frozen=True)
class EvalPlan:
    """One evaluation, checked: what to load, retrieve, rerank and measure, and where to write it."""

    dataset: str
    first_stage: str
    top_k: int
    rerankers: list[ModelSettings]
    metrics: list[str]
    output: Path
    split: str = "test"
    language: str = "english"
    max_queries: int | None = None
    cache_path: Path | None = None
    data_dir: Path | None = None


def require_eval_extra(first_stage: str) -> None:
    """An ImportError naming what to install, where a module the evaluation needs is missing."""
    missing = [package for module, package in EVAL_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ImportError(f"crossrank eval needs {', '.join(missing)}: pip install 'crossrank[eval]'")
    if first_stage.startswith("dense:") and importlib.util.find_spec("sentence_transformers") is None:
        raise ImportError("--first-stage dense:MODEL needs sentence-transformers: pip install sentence-transformers")


def check_first_stage(spec: str) -> None:
    """``bm25``, ``dense:MODEL`` or an existing TREC run file; anything else is refused before any work."""
    if spec == "bm25" or (spec.startswith("dense:") and spec.removeprefix("dense:")):
        return
    if not Path(spec).is_file():
        raise ValueError(f"--first-stage must be 'bm25', 'dense:MODEL' or a TREC run file; {spec!r} is none of them")


def check_output_folder(output: Path) -> None:
    """Create the output folder now, so that a path that cannot hold it fails before the work, not after."""
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output {output} is a file; eval writes a folder (report.json, report.png, runs)")
    output.mkdir(parents=True, exist_ok=True)


def check_models(rerankers: list[ModelSettings]) -> None:
    """Find every model (downloading it if need be) and check that it is a cross-encoder, before any work."""
    from crossrank.model.loading import load_tokenizer, resolve_model

    for settings in rerankers:
        load_tokenizer(resolve_model(settings.model, models_dir=settings.models_dir).path, settings.model)


@model_options()
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
    metrics: Annotated[str, typer.Option("--metrics", envvar="CROSSRANK_METRICS",
                                         help="Comma-separated ranx metrics; the first one drives wins/losses "
                                              "and the chart.")] = "ndcg@10,mrr@10,recall@100",
    output: Annotated[Path, typer.Option("--output", envvar="CROSSRANK_OUTPUT",
                                         help="Folder for report.json, report.png and the runs as TREC files.")
                      ] = Path("report"),
    compare: Annotated[bool, typer.Option("--compare", envvar="CROSSRANK_COMPARE",
                                          help="Rerank with every model listed after DATASET, in one table.")] = False,
    compare_dtype: Annotated[list[str] | None, typer.Option(
        "--compare-dtype", envvar="CROSSRANK_COMPARE_DTYPE", show_default=False,
        help="Also rerank with the same model in this dtype (repeatable: --compare-dtype int8 --compare-dtype bf16), "
             "in the same table: what bf16 or int8 costs on your data.")] = None,
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
    *,
    settings: ModelSettings,
) -> None:
    """Rerank a first stage's top-k on a retrieval benchmark and report what it changed.

    Example: crossrank eval scifact --first-stage bm25 --top-k 100 --model BAAI/bge-reranker-v2-m3
    """
    rerankers = _rerankers(settings, models, compare, compare_dtype or [])
    with friendly_errors():
        plan = EvalPlan(dataset, first_stage, top_k, rerankers, [], output, split, language, max_queries,
                        cache or output / "scores.sqlite", data_dir)
        plan = _checked(plan, metrics)
        report = run_evaluation(_stderr(), plan)
    from rich.console import Console

    from crossrank.eval.report import render_table

    Console().print(render_table(report))
    say(f"wrote {output / 'report.json'}, {output / 'report.png'} and the runs as TREC files in {output}")


def _rerankers(settings: ModelSettings, models: list[str] | None, compare: bool,
               compare_dtypes: list[str]) -> list[ModelSettings]:
    """The rerankers to evaluate: the models after DATASET with --compare, else the one of --model; each also in
    every dtype of --compare-dtype."""
    if compare and not models:
        fail("--compare needs the models to compare after DATASET")
    if models and not compare:
        fail(f"extra arguments {' '.join(models)}: to compare several models, add --compare")
    rerankers = [replace(settings, model=m) for m in models] if compare and models else [settings]
    return rerankers + [replace(r, dtype=_dtype_choice(d)) for d in compare_dtypes for r in rerankers]


def _dtype_choice(name: str) -> Dtype:
    if name not in DTYPES:
        fail(f"--compare-dtype {name!r}: use one of {', '.join(DTYPES)}")
    return cast(Dtype, name)


def system_name(settings: ModelSettings, rerankers: list[ModelSettings]) -> str:
    """The model's name in the report, with its dtype where the same model is reranked in several dtypes."""
    same_model = [r for r in rerankers if r.model == settings.model]
    return f"{settings.model} [{settings.dtype}]" if len(same_model) > 1 else settings.model


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _checked(plan: EvalPlan, metrics: str) -> EvalPlan:
    """The plan with its metrics parsed, once everything in it has been checked (in the order a user fixes it)."""
    from crossrank.eval.metrics import metric_depths, parse_metrics, shallow_metrics

    require_eval_extra(plan.first_stage)
    names = parse_metrics(metrics)
    depths = metric_depths(names)
    check_first_stage(plan.first_stage)
    check_output_folder(plan.output)
    check_models(plan.rerankers)
    for name in shallow_metrics(depths, plan.top_k):
        say(f"note: {name} is measured on the top {plan.top_k} candidates per query, which reranking only "
            f"reorders; for {name} of the reranked list, pass --top-k {max(depths[name], plan.top_k)} or more")
    return replace(plan, metrics=names)


def _progress(console: Console, unit: str = "") -> Progress:
    from rich import progress as p

    columns = [p.TextColumn("{task.description}"), p.BarColumn()]
    if not unit:
        columns.append(p.MofNCompleteColumn())
    return p.Progress(*columns, p.TimeElapsedColumn(), p.TimeRemainingColumn(), console=console)


def _load_dataset(console: Console, plan: EvalPlan) -> Dataset:
    from dataclasses import replace as copy_with

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from crossrank.eval.datasets import DatasetNotFoundError, load_dataset

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console) as bar:
        task = bar.add_task(f"downloading {plan.dataset}", total=None, visible=False)

        def on_bytes(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, visible=True)

        try:
            data = load_dataset(plan.dataset, cache_dir=plan.data_dir, split=plan.split, progress=on_bytes)
        except DatasetNotFoundError as exc:
            raise ValueError(str(exc)) from exc
    if plan.max_queries is not None:
        keep = list(data.queries)[:plan.max_queries]
        data = copy_with(data, queries={q: data.queries[q] for q in keep}, qrels={q: data.qrels[q] for q in keep})
    return data


def _first_stage(console: Console, plan: EvalPlan, data: Dataset) -> SystemResult:
    from crossrank.eval.first_stage import first_stage_run
    from crossrank.eval.metrics import evaluate_per_query
    from crossrank.eval.report import SystemResult

    with _progress(console) as bar:
        tasks: dict[str, Any] = {}

        def on_stage(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{plan.first_stage}: {phase}", total=total)
            bar.update(tasks[phase], completed=done, total=total)

        began = time.perf_counter()
        device = plan.rerankers[0].device
        candidates = first_stage_run(plan.first_stage, data, plan.top_k, language=plan.language,
                                     device=None if device == "auto" else device, progress=on_stage)
        seconds = time.perf_counter() - began
    name = Path(plan.first_stage).name if Path(plan.first_stage).is_file() else plan.first_stage
    return SystemResult(name, candidates, evaluate_per_query(data.qrels, candidates, plan.metrics), seconds)


def _rerank(console: Console, plan: EvalPlan, data: Dataset, base: SystemResult, cache: Any,
            settings: ModelSettings) -> SystemResult:
    from crossrank.cli.console import load_reranker
    from crossrank.eval.metrics import evaluate_per_query
    from crossrank.eval.report import SystemResult, display_name
    from crossrank.eval.rerank import RerankInterrupted, rerank_run

    began = time.perf_counter()
    with load_reranker(settings) as reranker, _progress(console, "tokens") as bar:
        task = bar.add_task(f"reranking with {display_name(settings.model)}", total=None)

        def on_tokens(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            reranked, stats = rerank_run(reranker, data, base.run, cache=cache, progress=on_tokens)
        except RerankInterrupted as stop:
            bar.stop()
            say(f"interrupted: {stop.kept:,} of {stop.todo:,} pairs were scored and are kept in {plan.cache_path}; "
                "run the same command again to go on from there")
            raise typer.Exit(130) from None
        info = reranker.describe()
    say(f"{display_name(settings.model)}: {stats.scored:,} pairs scored, {stats.cached:,} from the cache "
        f"({plan.cache_path})")
    return SystemResult(system_name(settings, plan.rerankers), reranked,
                        evaluate_per_query(data.qrels, reranked, plan.metrics), time.perf_counter() - began, stats,
                        info)


def run_evaluation(console: Console, plan: EvalPlan) -> dict[str, Any]:
    """Load, retrieve, rerank with each model, measure, write the outputs; returns the report."""
    from crossrank.eval.cache import ScoreCache
    from crossrank.eval.metrics import metric_depths, shallow_metrics
    from crossrank.eval.report import build_report, write_outputs

    data = _load_dataset(console, plan)
    console.print(f"{data.name}: {len(data.corpus):,} documents, {len(data.queries):,} judged queries ({data.path})",
                  markup=False, highlight=False)
    base = _first_stage(console, plan, data)
    assert plan.cache_path is not None
    with ScoreCache(plan.cache_path) as cache:
        results = [_rerank(console, plan, data, base, cache, settings) for settings in plan.rerankers]
    info = {"name": data.name, "path": str(data.path), "split": plan.split, "documents": len(data.corpus),
            "queries": len(data.queries)}
    report = build_report(dataset=info, first_stage=base, rerankers=results, metrics=plan.metrics, top_k=plan.top_k)
    report["metrics_past_top_k"] = shallow_metrics(metric_depths(plan.metrics), plan.top_k)
    write_outputs(report, base, results, plan.output)
    return report
