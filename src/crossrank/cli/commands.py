"""The core commands: ``rerank``, ``demo`` and ``check`` (registered on the app in :mod:`crossrank.cli.app`)."""

from __future__ import annotations

import json
import os
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from crossrank.cli.console import friendly_errors, load_reranker, out, progress_bar, say
from crossrank.cli.options import model_options
from crossrank.cli.render import FORMATS, format_results, results_table
from crossrank.core.ranking import RerankResult
from crossrank.core.settings import ModelSettings, env_var


def check_output_file(output: Path) -> None:
    """Refuse an output path that cannot be written, before any work: a folder, or a file in a missing folder."""
    if output.is_dir():
        raise IsADirectoryError(f"--output {output} is a folder; give a file name, e.g. {output / 'results.json'}")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"--output {output}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise PermissionError(f"--output {output} cannot be written (permission denied)")


def _write(results: list[RerankResult], fmt: str, output: Path | None, title: str, threshold: float,
           ids: list[str | None] | None) -> None:
    if fmt == "table":
        table = results_table(results, threshold, title=title, ids=ids)
        if output is None:
            out.print(table)
            return
        with output.open("w", encoding="utf-8") as file:
            Console(file=file, width=200, no_color=True).print(table)
    else:
        text = format_results(results, fmt, ids)
        if output is None:
            sys.stdout.write(text)
            return
        output.write_text(text, encoding="utf-8")
    say(f"wrote {len(results)} results to {output}")


@model_options()
def rerank(
    query: Annotated[str, typer.Option("--query", "-q", envvar=env_var("query"),
                                       help="The question or search text.")],
    passages: Annotated[str, typer.Option(
        "--passages", "-p", envvar=env_var("passages"),
        help="File with one passage per line, JSONL with a 'text' field (and 'id'), or a .csv/.tsv with a 'text' "
             "column (and 'id'); - for stdin. Any readable path works, <(...) and /dev/stdin too."
    )],
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", min=1, envvar=env_var("top_k"),
                                              help="Keep only the best K.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", envvar=env_var("format"),
                                     help="table | json | jsonl | csv.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", envvar=env_var("output"),
                                                help="Write results to this file.")] = None,
    threshold: Annotated[float, typer.Option(envvar=env_var("threshold"),
                                             help="Scores above are green, at or below red.")] = 0.5,
    encoding: Annotated[str, typer.Option(envvar=env_var("encoding"),
                                          help="Text encoding of the passages (e.g. latin-1, cp1252).")] = "utf-8",
    *,
    settings: ModelSettings,
) -> None:
    """Rank passages against a query, best first."""
    from crossrank.cli.passages import read_passages

    with friendly_errors():
        if fmt not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if output is not None:
            check_output_file(output)
        given = read_passages(passages, sys.stdin.buffer, encoding)
        reranker = load_reranker(settings)
        started = time.perf_counter()
        with progress_bar(len(given.texts), "scoring") as progress:
            results = reranker.rerank(query, given.texts, top_k=top_k, progress=progress)
        seconds = time.perf_counter() - started
        title = f"{query}  ({len(given.texts)} passages, {seconds * 1000:.0f} ms)"
        _write(results, fmt, output, title, threshold, given.ids)


def demo_cases() -> list[dict[str, Any]]:
    """The keyword-trap cases shipped with the package (`crossrank/data/demo_cases.json`)."""
    data = json.loads(resources.files("crossrank").joinpath("data/demo_cases.json").read_text(encoding="utf-8"))
    return list(data["cases"])


@model_options()
def demo(
    threshold: Annotated[float, typer.Option(envvar=env_var("threshold"), help="Green above, red at or below.")] = 0.5,
    *,
    settings: ModelSettings,
) -> None:
    """A single-pair sanity score, then each keyword-trap case as a ranked table."""
    with friendly_errors():
        reranker = load_reranker(settings)
        info = reranker.describe()
        out.print(f"{info['model']} loaded from {info['path']} ({info['source']}) in {reranker.load_seconds:.1f} s "
                  f"on {info['device']} / {info['dtype']} ({info['backend']})", markup=False)
        cases = demo_cases()
        first = cases[0]
        started = time.perf_counter()
        score = reranker.score([(first["query"], first["passages"][0])])[0]
        out.print(f"{first['name']}: score({first['query']!r}, {first['passages'][0]!r}) = {score:.4f} "
                  f"({(time.perf_counter() - started) * 1000:.1f} ms)", markup=False)
        for case in cases[1:]:
            started = time.perf_counter()
            results = reranker.rerank(case["query"], case["passages"])
            ms = (time.perf_counter() - started) * 1000
            out.print(results_table(results, threshold, title=f"{case['name']}: {case['query']}  ({ms:.1f} ms)"))


@model_options()
def check(*, settings: ModelSettings) -> None:
    """Environment self-check: GPU, torch build, where the model is, load time, one sanity score.

    A machine without a GPU is fine (crossrank falls back to the CPU); a missing model, a broken install or a failed
    score exits non-zero and names the fix.
    """
    from rich.markup import escape

    from crossrank.cli.selfcheck import run_checks

    ok = True
    for result in run_checks(settings):
        mark = {"ok": "[green]✓[/]", "info": "[cyan]•[/]", "fail": "[bold red]✗[/]"}[result.status]
        out.print(f"{mark} [bold]{escape(result.name)}[/]: {escape(result.detail)}", highlight=False)
        for n, line in enumerate((result.fix or "").splitlines()):
            # soft_wrap: a command in the fix is never broken across lines, so it can be pasted.
            out.print(("    fix: " if n == 0 else "         ") + escape(line.strip()), highlight=False, soft_wrap=True)
        ok = ok and result.status != "fail"
    if not ok:
        raise typer.Exit(1)
