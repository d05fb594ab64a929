"""The ``crossrank`` typer app: the global options, and every command registered here (the core's from
:mod:`crossrank.cli.commands`, the edges' from their own packages, which import only the CLI's shared helpers)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.logging import RichHandler

from crossrank import __version__
from crossrank.batch.command import batch
from crossrank.cli.commands import check, demo, rerank
from crossrank.cli.console import err, out
from crossrank.core.settings import env_var
from crossrank.eval.command import eval_command
from crossrank.server.command import serve
from crossrank.server.ui_command import UI_CONTEXT, ui

app = typer.Typer(
    name="crossrank",
    help="A local cross-encoder reranker that scores exactly like FlagReranker, faster. "
    "Every option can also be set with a CROSSRANK_* environment variable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    """Set up logging on stderr (the commands' output goes to stdout)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)], force=True)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


app.command()(rerank)
app.command()(demo)
app.command()(check)
app.command("serve")(serve)
app.command("ui", context_settings=UI_CONTEXT)(ui)
app.command("eval")(eval_command)
app.command("batch")(batch)
