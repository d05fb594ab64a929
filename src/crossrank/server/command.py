"""``crossrank serve``: the typer command that starts the HTTP service on uvicorn.

Registered in ``crossrank.cli.app``; also runnable as
``python -m crossrank.server.command --model DIR``. FastAPI and uvicorn are imported inside the command, so the CLI's
``--help`` works without the ``serve`` extra.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Annotated

import typer

from crossrank.cli.console import fail
from crossrank.cli.options import model_options
from crossrank.core.settings import ModelSettings, ServerSettings, env_var

_DEFAULTS = ServerSettings()


@model_options(devices=True)
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the service to the network.",
                                      envvar=env_var("host"))] = _DEFAULTS.host,
    port: Annotated[int, typer.Option(help="TCP port.", envvar=env_var("port"))] = _DEFAULTS.port,
    api_key: Annotated[str | None, typer.Option(help="Require this key (Authorization: Bearer KEY) on every route "
                                                "but /health.", envvar=env_var("api_key"))] = None,
    max_client_batch_size: Annotated[int, typer.Option(help="Most documents in one request (more: 413).",
                                                       envvar=env_var("max_client_batch_size"))]
    = _DEFAULTS.max_client_batch_size,
    max_queued_pairs: Annotated[int, typer.Option(help="Most pairs waiting in the engine (more: 429).",
                                                  envvar=env_var("max_queued_pairs"))] = _DEFAULTS.max_queued_pairs,
    payload_limit: Annotated[int, typer.Option(help="Largest request body in bytes (more: 413).",
                                               envvar=env_var("payload_limit"))] = _DEFAULTS.payload_limit,
    max_document_chars: Annotated[int, typer.Option(help="Longest query or document in characters (more: 413).",
                                                    envvar=env_var("max_document_chars"))]
    = _DEFAULTS.max_document_chars,
    cors_origin: Annotated[list[str] | None, typer.Option(help="Allow browser calls from this origin (repeatable); "
                                                          "CORS is closed when none is given.",
                                                          envvar=env_var("cors_origin"))] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.", envvar=env_var("log_level"))] = "info",
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
    """Serve the reranker over HTTP (Cohere v1/v2, Jina and TEI compatible). Stops gracefully on SIGTERM/SIGINT."""
    try:
        import uvicorn

        from crossrank.server.app import create_app
    except ImportError as exc:
        fail(f"{exc}: install the service with pip install 'crossrank[serve]'")
    server = ServerSettings(
        model=settings,
        host=host, port=port, api_key=api_key or None, max_client_batch_size=max_client_batch_size,
        max_queued_pairs=max_queued_pairs, payload_limit=payload_limit, max_document_chars=max_document_chars,
        cors_origins=tuple(cors_origin or ()),
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
    config = uvicorn.Config(create_app(server), host=host, port=port, log_level=log_level, access_log=True,
                            timeout_graceful_shutdown=None)
    _graceful_server_class()(config).run()


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
