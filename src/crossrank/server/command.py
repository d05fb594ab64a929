"""``crossrank serve``: the typer command that starts the HTTP service on uvicorn.

Registered in ``crossrank.cli.app``; also runnable as
``python -m crossrank.server.command --model DIR``. FastAPI and uvicorn are imported inside the command, so the CLI's
``--help`` works without the ``serve`` extra.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import traceback
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from crossrank.cli.console import fail
from crossrank.cli.options import model_options
from crossrank.core.errors import CrossrankError
from crossrank.core.settings import ModelSettings, ServerSettings, env_var

STARTUP_FAILURE = 3  # uvicorn's exit code for a failed start
_DEFAULTS = ServerSettings()


def _option(help_text: str, name: str, **kwargs: Any) -> Any:
    return typer.Option(help=help_text, envvar=env_var(name), **kwargs)


@model_options(devices=True)
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the service to the network.",
                                      envvar=env_var("host"))] = _DEFAULTS.host,
    port: Annotated[int, typer.Option(help="TCP port.", envvar=env_var("port"))] = _DEFAULTS.port,
    api_key: Annotated[str | None, typer.Option(help="Require this key (Authorization: Bearer KEY) on every route "
                                                "but /health and the web page's files; visible ASCII only.",
                                                envvar=env_var("api_key"))] = None,
    served_model_name: Annotated[list[str] | None, _option(
        "A name requests may give as 'model' (repeatable; the first is the one responses and /v1/models show). "
        "Default: the model id and its last path component. Another name is a 404.", "served_model_name")] = None,
    any_model_name: Annotated[bool, _option("Answer requests naming any model with the served one.",
                                            "any_model_name")] = _DEFAULTS.any_model_name,
    max_client_batch_size: Annotated[int, typer.Option(help="Most documents in one request (more: 413).",
                                                       envvar=env_var("max_client_batch_size"))]
    = _DEFAULTS.max_client_batch_size,
    max_queued_pairs: Annotated[int, typer.Option(help="Most pairs waiting in the engine (more: 429).",
                                                  envvar=env_var("max_queued_pairs"))] = _DEFAULTS.max_queued_pairs,
    max_queue_seconds: Annotated[float, _option(
        "Queue bound in seconds of work: a request is refused (503 + Retry-After) when the queue ahead of it holds "
        "more than this at the recent throughput, or when it has not started within this. 0: no time bound.",
        "max_queue_seconds", min=0)] = _DEFAULTS.max_queue_seconds or 0.0,
    payload_limit: Annotated[int, typer.Option(help="Largest request body in bytes (more: 413).",
                                               envvar=env_var("payload_limit"))] = _DEFAULTS.payload_limit,
    max_document_chars: Annotated[int, typer.Option(help="Longest query or document in characters (more: 413).",
                                                    envvar=env_var("max_document_chars"))]
    = _DEFAULTS.max_document_chars,
    max_connections: Annotated[int, _option("Most open connections; one more is answered 503 and closed.",
                                            "max_connections", min=1)] = _DEFAULTS.max_connections,
    header_timeout: Annotated[float, _option(
        "Seconds a connection has to send a complete request head (then 408 and closed).", "header_timeout",
        min=0.1)] = _DEFAULTS.header_timeout,
    body_timeout: Annotated[float, _option("Seconds a request body has to arrive in full (then 408 and closed).",
                                           "body_timeout", min=0.1)] = _DEFAULTS.body_timeout,
    timeout_keep_alive: Annotated[int, _option("Seconds an idle kept-alive connection stays open.",
                                               "timeout_keep_alive", min=1)] = _DEFAULTS.timeout_keep_alive,
    max_header_bytes: Annotated[int, _option("Largest request head (request line and headers) in bytes (more: 400).",
                                             "max_header_bytes", min=1024)] = _DEFAULTS.max_header_bytes,
    max_headers: Annotated[int, _option("Most request headers (more: 431).", "max_headers", min=8)]
    = _DEFAULTS.max_headers,
    graceful_shutdown_seconds: Annotated[int, _option(
        "On SIGTERM/SIGINT, seconds open requests get to finish before they are cancelled.",
        "graceful_shutdown_seconds", min=0)] = _DEFAULTS.graceful_shutdown_seconds,
    health_stall_seconds: Annotated[float, _option(
        "/health answers 503 when queued work has seen no forward pass finish for this long.",
        "health_stall_seconds", min=1)] = _DEFAULTS.health_stall_seconds,
    release_memory_seconds: Annotated[float, _option(
        "Give freed memory back to the OS: large blocks at once, and the rest of the heap this often while busy "
        "(glibc's mallopt and malloc_trim); 0: leave the allocator as it is.",
        "release_memory_seconds", min=0)] = _DEFAULTS.release_memory_seconds,
    cors_origin: Annotated[list[str] | None, typer.Option(help="Allow browser calls from this origin (repeatable); "
                                                          "CORS is closed when none is given.",
                                                          envvar=env_var("cors_origin"))] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.", envvar=env_var("log_level"))] = "info",
    debug: Annotated[bool, _option("Show the traceback when the model cannot be loaded.", "debug")] = False,
    use_ray: Annotated[bool, typer.Option("--ray", help="Serve on Ray Serve (the same API; RAY_ADDRESS's cluster or "
                                          "a local one) instead of one uvicorn process.", envvar=env_var("ray"))]
    = False,
    replicas: Annotated[int, typer.Option(min=1, help="Ray: replicas (the minimum when --max-replicas is higher).",
                                          envvar=env_var("replicas"))] = 1,
    max_replicas: Annotated[int | None, typer.Option(min=1, help="Ray: autoscale up to this many replicas on ongoing "
                                                     "requests.", envvar=env_var("max_replicas"))] = None,
    gpus_per_replica: Annotated[float, typer.Option(min=0, help="Ray: GPUs per replica.",
                                                    envvar=env_var("gpus_per_replica"))] = 0.0,
    cpus_per_replica: Annotated[float, typer.Option(min=0, help="Ray: CPUs per replica.",
                                                    envvar=env_var("cpus_per_replica"))] = 1.0,
    target_ongoing_requests: Annotated[float, typer.Option(min=1, help="Ray: autoscaling target of requests in "
                                                           "flight per replica.",
                                                           envvar=env_var("target_ongoing_requests"))] = 32.0,
    *,
    settings: ModelSettings,
) -> None:
    """Serve the reranker over HTTP (Cohere v1/v2, Jina and TEI compatible). Stops gracefully on SIGTERM/SIGINT.

    Exits 3 with the cause, and no traceback (unless --debug), when the model cannot be loaded."""
    try:
        import uvicorn  # noqa: F401 - checked here so that a missing extra is named

        from crossrank.server.app import create_app
        from crossrank.server.protocol import uvicorn_config
    except ImportError as exc:  # pragma: no cover - depends on the installation
        fail(f"{exc}: install the service with pip install 'crossrank[serve]'")
    check_api_key(api_key)
    server = ServerSettings(
        model=settings,
        host=host, port=port, api_key=api_key or None, max_client_batch_size=max_client_batch_size,
        max_queued_pairs=max_queued_pairs, payload_limit=payload_limit, max_document_chars=max_document_chars,
        cors_origins=tuple(cors_origin or ()), max_queue_seconds=max_queue_seconds or None,
        health_stall_seconds=health_stall_seconds, served_model_names=tuple(served_model_name or ()),
        any_model_name=any_model_name, max_connections=max_connections, timeout_keep_alive=timeout_keep_alive,
        header_timeout=header_timeout, body_timeout=body_timeout, max_header_bytes=max_header_bytes,
        max_headers=max_headers, graceful_shutdown_seconds=graceful_shutdown_seconds,
        release_memory_seconds=release_memory_seconds,
    )
    if use_ray:
        try:
            import ray.serve  # noqa: F401

            from crossrank.ray.serve import ReplicaOptions, run
        except ImportError as exc:
            fail(f"--ray needs Ray Serve ({exc}): pip install 'crossrank[ray]'")
        run(server, ReplicaOptions(replicas=replicas, max_replicas=max_replicas, gpus_per_replica=gpus_per_replica,
                                     cpus_per_replica=cpus_per_replica,
                                     target_ongoing_requests=target_ongoing_requests))
        return
    if release_memory_seconds > 0:
        from crossrank.server.memory import release_large_blocks_promptly

        release_large_blocks_promptly()  # before the model and its threads allocate anything
    engine = load_engine(server, debug=debug)
    config = uvicorn_config(create_app(server, engine), server, log_level=log_level, access_log=True)
    _graceful_server_class()(config).run()


def check_api_key(api_key: str | None) -> None:
    """Refuse a key no client could send: an HTTP header carries visible ASCII (a space would split the key)."""
    if api_key and not all("!" <= c <= "~" for c in api_key):
        raise typer.BadParameter("the API key must be visible ASCII characters without spaces: other characters "
                                 "cannot be sent in an Authorization header, so no request could ever match it",
                                 param_hint="--api-key")


def load_engine(settings: ServerSettings, *, debug: bool = False) -> Any:
    """Load the model and build the engine; a failure is one line on stderr and exit code 3 (uvicorn's start-up
    failure code), the traceback only with ``debug``."""
    from crossrank.engine import Engine
    from crossrank.reranker import Reranker

    typer.echo(f"loading model {settings.model.model}", err=True)
    try:
        # The engine tokenises each request in a thread of its own (no tokenizer processes: those serve
        # Reranker.score's slices) and batches across requests on the reranker's runtime, one or several devices.
        reranker = Reranker.from_settings(settings.model, 0)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        cause = str(exc) if isinstance(exc, CrossrankError) else f"{type(exc).__name__}: {exc}"
        typer.echo(f"error: cannot load the model {settings.model.model!r}: {cause}", err=True)
        raise typer.Exit(STARTUP_FAILURE) from None
    return Engine(reranker, max_queued_pairs=settings.max_queued_pairs, max_queue_seconds=settings.max_queue_seconds)


def _graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's own SIGTERM/SIGINT handling (stop accepting, let open requests finish, run the lifespan's
        shutdown, which drains the engine), without re-raising the signal afterwards: a clean stop exits 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer


if __name__ == "__main__":
    typer.run(serve)
