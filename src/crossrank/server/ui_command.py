"""``crossrank ui``: start the service exactly as ``crossrank serve`` does and open its web page once it is healthy."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable
from typing import Annotated

import typer

from crossrank.core.settings import ServerSettings, env_var
from crossrank.server.command import serve

_D = ServerSettings()
HEALTH_POLL_SECONDS = 0.5
# Loading (or first downloading) a model can take minutes; stop polling after this long.
HEALTH_TIMEOUT_SECONDS = 30 * 60.0


def page_url(host: str, port: int) -> str:
    """The address a local browser should open: a wildcard bind is reached via loopback.

    >>> page_url("0.0.0.0", 8000)
    'http://127.0.0.1:8000/'
    >>> page_url("::1", 9000)
    'http://[::1]:9000/'
    """
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """True when ``GET {url}health`` answers 200."""
    try:
        with urllib.request.urlopen(url + "health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def open_when_healthy(url: str, stop: threading.Event, *, opener: Callable[[str], object] = webbrowser.open,
                      poll: float = HEALTH_POLL_SECONDS, timeout: float = HEALTH_TIMEOUT_SECONDS) -> bool:
    """Poll ``/health`` until it is 200, then open ``url`` once; give up when ``stop`` is set or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        if is_healthy(url):
            opener(url)
            return True
        stop.wait(poll)
    return False


def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(envvar=env_var("host"), help="Address to bind; the page opens on loopback.")]
    = _D.host,
    port: Annotated[int, typer.Option(envvar=env_var("port"), help="Port to listen on.")] = _D.port,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", envvar=env_var("ui_open"),
                                               help="Open the page in the default browser once the model is ready.")]
    = True,
) -> None:
    """Start the reranking service (every other option is passed to `crossrank serve`) and open its web page.

    Example: ``crossrank ui --model BAAI/bge-reranker-v2-m3 --port 8000``
    """
    url = page_url(host, port)
    stop = threading.Event()
    if open_browser:
        threading.Thread(target=open_when_healthy, args=(url, stop), name="crossrank-ui-opener", daemon=True).start()
    typer.echo(f"crossrank ui: the page will be at {url} once the model is loaded", err=True)
    try:
        run_serve(["--host", host, "--port", str(port), *ctx.args])
    finally:
        stop.set()


def run_serve(args: list[str]) -> None:
    """Run the real ``serve`` command on ``args``, so every serve option (and its env var) works unchanged."""
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command()(serve)
    typer.main.get_command(single).main(args=args, prog_name="crossrank serve", standalone_mode=False)


UI_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
