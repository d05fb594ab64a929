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
from typing import Any

import typer

from crossrank.cli.console import fail
from crossrank.cli.options import model_options
from crossrank.core.errors import CrossrankError
from crossrank.core.settings import ModelSettings, ServerSettings
from crossrank.server import options as opt

STARTUP_FAILURE = 3  # uvicorn's exit code for a failed start
_DEFAULTS = ServerSettings()


@model_options(devices=True)
def serve(
    host: opt.HostOption = _DEFAULTS.host,
    port: opt.PortOption = _DEFAULTS.port,
    api_key: opt.ApiKeyOption = None,
    served_model_name: opt.ServedModelNameOption = None,
    any_model_name: opt.AnyModelNameOption = _DEFAULTS.any_model_name,
    max_client_batch_size: opt.MaxClientBatchSizeOption = _DEFAULTS.max_client_batch_size,
    max_queued_pairs: opt.MaxQueuedPairsOption = _DEFAULTS.max_queued_pairs,
    max_queue_seconds: opt.MaxQueueSecondsOption = _DEFAULTS.max_queue_seconds or 0.0,
    payload_limit: opt.PayloadLimitOption = _DEFAULTS.payload_limit,
    max_document_chars: opt.MaxDocumentCharsOption = _DEFAULTS.max_document_chars,
    max_connections: opt.MaxConnectionsOption = _DEFAULTS.max_connections,
    header_timeout: opt.HeaderTimeoutOption = _DEFAULTS.header_timeout,
    body_timeout: opt.BodyTimeoutOption = _DEFAULTS.body_timeout,
    timeout_keep_alive: opt.TimeoutKeepAliveOption = _DEFAULTS.timeout_keep_alive,
    max_header_bytes: opt.MaxHeaderBytesOption = _DEFAULTS.max_header_bytes,
    max_headers: opt.MaxHeadersOption = _DEFAULTS.max_headers,
    graceful_shutdown_seconds: opt.GracefulShutdownSecondsOption = _DEFAULTS.graceful_shutdown_seconds,
    health_stall_seconds: opt.HealthStallSecondsOption = _DEFAULTS.health_stall_seconds,
    release_memory_seconds: opt.ReleaseMemorySecondsOption = _DEFAULTS.release_memory_seconds,
    cors_origin: opt.CorsOriginOption = None,
    log_level: opt.LogLevelOption = "info",
    debug: opt.DebugOption = False,
    use_ray: opt.UseRayOption = False,
    replicas: opt.ReplicasOption = 1,
    max_replicas: opt.MaxReplicasOption = None,
    gpus_per_replica: opt.GpusPerReplicaOption = 0.0,
    cpus_per_replica: opt.CpusPerReplicaOption = 1.0,
    target_ongoing_requests: opt.TargetOngoingRequestsOption = 32.0,
    *,
    settings: ModelSettings,
) -> None:
    """Serve the reranker over HTTP (Cohere v1/v2, Jina and TEI compatible). Stops gracefully on SIGTERM/SIGINT.

    Exits 3 with the cause, and no traceback (unless --debug), when the model cannot be loaded."""
    _check_serve_extra()
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
        _serve_on_ray(server, replicas=replicas, max_replicas=max_replicas, gpus_per_replica=gpus_per_replica,
                      cpus_per_replica=cpus_per_replica, target_ongoing_requests=target_ongoing_requests)
    else:
        _serve_on_uvicorn(server, log_level=log_level, debug=debug)


def _check_serve_extra() -> None:
    """Exit with the command to run when the ``serve`` extra (FastAPI, uvicorn) is not installed."""
    try:
        import uvicorn  # noqa: F401 - checked here so that a missing extra is named

        from crossrank.server.app import create_app  # noqa: F401
        from crossrank.server.protocol import uvicorn_config  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the installation
        fail(f"{exc}: install the service with pip install 'crossrank[serve]'")


def _serve_on_ray(server: ServerSettings, **replica_options: Any) -> None:
    """Deploy the service on Ray Serve with :class:`crossrank.ray.serve.ReplicaOptions` made of ``replica_options``."""
    try:
        import ray.serve  # noqa: F401

        from crossrank.ray.serve import ReplicaOptions, run
    except ImportError as exc:
        fail(f"--ray needs Ray Serve ({exc}): pip install 'crossrank[ray]'")
    run(server, ReplicaOptions(**replica_options))


def _serve_on_uvicorn(server: ServerSettings, *, log_level: str, debug: bool) -> None:
    """Load the model and serve it in this process until SIGTERM/SIGINT."""
    from crossrank.server.app import create_app
    from crossrank.server.protocol import uvicorn_config

    if server.release_memory_seconds > 0:
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
        # The engine tokenises requests in the reranker's tokenizer thread (tokenizer processes measured no faster
        # behind HTTP) and batches across requests on the reranker's runtime, one device or several.
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
