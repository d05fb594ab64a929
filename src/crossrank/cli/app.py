"""The ``crossrank`` command line: rerank, demo, check (serve, eval and batch are registered at the end)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from crossrank import __version__
from crossrank.cli import options as opt
from crossrank.cli.render import FORMATS, format_results, results_table
from crossrank.core.errors import CrossrankError
from crossrank.core.settings import DEFAULT_MODEL, ModelSettings, env_var

app = typer.Typer(
    name="crossrank",
    help="A local cross-encoder reranker that scores exactly like FlagReranker, faster. "
    "Every option can also be set with a CROSSRANK_* environment variable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
PROGRESS_MIN_PAIRS = 64
_D = ModelSettings()


def _version(value: bool) -> None:
    if value:
        out.print(f"crossrank {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", envvar=env_var("verbose"), help="Log progress details.")]
    = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)], force=True)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn crossrank's and the caller's mistakes into one red line and exit code 1, not a traceback."""
    try:
        yield
    except (CrossrankError, ValueError, TypeError, FileNotFoundError) as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from exc


def load_reranker(settings: ModelSettings) -> Any:
    from crossrank.reranker import Reranker

    with err.status(f"loading {settings.model} …"):
        return Reranker.from_settings(settings)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr for long work; nothing for short work."""
    if total < PROGRESS_MIN_PAIRS:
        yield None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done, total_: progress.update(task, completed=done, total=total_)


@app.command()
def rerank(
    query: Annotated[str, typer.Option("--query", "-q", envvar=env_var("query"),
                                       help="The question or search text.")],
    passages: Annotated[str, typer.Option(
        "--passages", "-p", envvar=env_var("passages"),
        help="File with one passage per line, or JSONL with a 'text' field; - for stdin."
    )],
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", min=1, envvar=env_var("top_k"),
                                              help="Keep only the best K.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", envvar=env_var("format"),
                                     help="table | json | jsonl | csv.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", envvar=env_var("output"),
                                                help="Write results to this file.")] = None,
    threshold: Annotated[float, typer.Option(envvar=env_var("threshold"),
                                             help="Scores above are green, at or below red.")] = 0.5,
    model: opt.Model = DEFAULT_MODEL,
    device: opt.Device = _D.device,
    dtype: opt.Dtype = _D.dtype,
    max_length: opt.MaxLength = _D.max_length,
    max_batch_tokens: opt.MaxBatchTokens = _D.max_batch_tokens,
    backend: opt.Backend = _D.backend,
    long_passages: opt.LongPassages = _D.long_passages,
    models_dir: opt.ModelsDir = _D.models_dir,
) -> None:
    """Rank passages against a query, best first."""
    from crossrank.cli.passages import read_passages

    with friendly_errors():
        if fmt not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        texts = read_passages(passages, sys.stdin)
        reranker = load_reranker(opt.model_settings(model, device, dtype, max_length, max_batch_tokens, backend,
                                                    long_passages, models_dir))
        started = time.perf_counter()
        with progress_bar(len(texts), "scoring") as progress:
            results = reranker.rerank(query, texts, top_k=top_k, progress=progress)
        seconds = time.perf_counter() - started
        if fmt == "table":
            title = f"{query}  ({len(texts)} passages, {seconds * 1000:.0f} ms)"
            table = results_table(results, threshold, title=title)
            if output is None:
                out.print(table)
            else:
                with output.open("w", encoding="utf-8") as file:
                    Console(file=file, width=200, no_color=True).print(table)
        else:
            text = format_results(results, fmt)
            if output is None:
                sys.stdout.write(text)
            else:
                output.write_text(text, encoding="utf-8")
        if output is not None:
            err.print(f"wrote {len(results)} results to {output}")


def demo_cases() -> list[dict[str, Any]]:
    """The keyword-trap cases shipped with the package (`crossrank/data/demo_cases.json`)."""
    data = json.loads(resources.files("crossrank").joinpath("data/demo_cases.json").read_text(encoding="utf-8"))
    return list(data["cases"])


@app.command()
def demo(
    threshold: Annotated[float, typer.Option(envvar=env_var("threshold"), help="Green above, red at or below.")] = 0.5,
    model: opt.Model = DEFAULT_MODEL,
    device: opt.Device = _D.device,
    dtype: opt.Dtype = _D.dtype,
    max_length: opt.MaxLength = _D.max_length,
    max_batch_tokens: opt.MaxBatchTokens = _D.max_batch_tokens,
    backend: opt.Backend = _D.backend,
    models_dir: opt.ModelsDir = _D.models_dir,
) -> None:
    """A single-pair sanity score, then each keyword-trap case as a ranked table."""
    with friendly_errors():
        settings = opt.model_settings(model, device, dtype, max_length, max_batch_tokens, backend, _D.long_passages,
                                      models_dir)
        reranker = load_reranker(settings)
        info = reranker.describe()
        out.print(f"[bold]{info['model']}[/] loaded from {info['path']} ({info['source']}) in "
                  f"{reranker.load_seconds:.1f} s on [bold]{info['device']}[/] / {info['dtype']} ({info['backend']})")
        cases = demo_cases()
        first = cases[0]
        started = time.perf_counter()
        score = reranker.score([(first["query"], first["passages"][0])])[0]
        out.print(f"{first['name']}: score({first['query']!r}, {first['passages'][0]!r}) = {score:.4f} "
                  f"({(time.perf_counter() - started) * 1000:.1f} ms)")
        for case in cases[1:]:
            started = time.perf_counter()
            results = reranker.rerank(case["query"], case["passages"])
            ms = (time.perf_counter() - started) * 1000
            out.print(results_table(results, threshold, title=f"{case['name']}: {case['query']}  ({ms:.1f} ms)"))


@app.command()
def check(
    model: opt.Model = DEFAULT_MODEL,
    device: opt.Device = _D.device,
    dtype: opt.Dtype = _D.dtype,
    max_length: opt.MaxLength = _D.max_length,
    max_batch_tokens: opt.MaxBatchTokens = _D.max_batch_tokens,
    backend: opt.Backend = _D.backend,
    models_dir: opt.ModelsDir = _D.models_dir,
) -> None:
    """Environment self-check: GPU, torch build, where the model is, load time, one sanity score.

    A machine without a GPU is fine (crossrank falls back to the CPU); a missing model, a broken install or a failed
    score exits non-zero and names the fix.
    """
    from crossrank.cli.selfcheck import run_checks

    ok = True
    for check_result in run_checks(opt.model_settings(model, device, dtype, max_length, max_batch_tokens, backend,
                                                        models_dir=models_dir)):
        mark = {"ok": "[green]✓[/]", "info": "[cyan]•[/]", "fail": "[bold red]✗[/]"}[check_result.status]
        out.print(f"{mark} [bold]{check_result.name}[/]: {check_result.detail}", highlight=False)
        if check_result.fix:
            out.print(f"    fix: {check_result.fix}", highlight=False)
        ok = ok and check_result.status != "fail"
    if not ok:
        raise typer.Exit(1)


# Commands of the optional parts; their modules import fastapi, ray or bm25s only when run.
from crossrank.batch.command import batch  # noqa: E402
from crossrank.eval.command import eval_command  # noqa: E402
from crossrank.server.command import serve  # noqa: E402
from crossrank.server.ui_command import UI_CONTEXT, ui  # noqa: E402

app.command("serve")(serve)
app.command("ui", context_settings=UI_CONTEXT)(ui)
app.command("eval")(eval_command)
app.command("batch")(batch)
