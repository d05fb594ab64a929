"""The ``crossrank`` command line (the lead's full cli.py replaces this stub; keep the registration line below)."""

from __future__ import annotations

import typer

from crossrank.eval.command import eval_command

app = typer.Typer(name="crossrank", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def main() -> None:
    """A local cross-encoder reranker that scores exactly like FlagReranker, faster."""


app.command("eval")(eval_command)
