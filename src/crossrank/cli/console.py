"""What every command shares: the two consoles, one-line errors, loading the model, the progress bar.

It imports no command, so the edges' commands (serve, eval, batch) import it without a cycle through ``cli.app``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from crossrank.core.errors import CrossrankError
from crossrank.core.settings import ModelSettings

if TYPE_CHECKING:
    from crossrank.reranker import Reranker

out = Console()
err = Console(stderr=True)
PROGRESS_MIN_PAIRS = 64
USER_ERRORS = (CrossrankError, ValueError, TypeError, OSError, ImportError, LookupError)
"""What a user's input or installation causes (a bad value, a missing or unreadable file, a missing extra): one red
line. Anything else is a bug and keeps its traceback."""


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr (as plain text: brackets in file names and ``pip install 'x[extra]'`` stay
    as they are, and a command in it is never wrapped mid-line) and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def error_message(exc: BaseException) -> str:
    """The text a user should read for ``exc``: the message, and where an OS error gives none, its file."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None and not isinstance(exc, CrossrankError):
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn the user's mistakes into one red line and exit code 1, and Ctrl-C into exit code 130, not a traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        fail(error_message(exc))
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        raise typer.Exit(130) from None


def say(message: str) -> None:
    """A plain line on stderr (file names with brackets kept as they are)."""
    err.print(escape(message), soft_wrap=True, highlight=False)


def load_reranker(settings: ModelSettings) -> Reranker:
    """The model of ``settings``, with a spinner on stderr while it loads."""
    from crossrank.reranker import Reranker

    with err.status(f"loading {escape(settings.model)} …"):
        return Reranker.from_settings(settings)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr for long work; nothing for short work."""
    if total < PROGRESS_MIN_PAIRS:
        yield None
        return
    with Progress(TextColumn(escape(label)), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done, total_: progress.update(task, completed=done, total=total_)
