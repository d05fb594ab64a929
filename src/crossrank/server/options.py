"""The options of ``crossrank serve``, defined once as annotated types: each is its typer option (help text, environment
variable, bounds), and the command's signature pairs it with its default from :class:`ServerSettings`.

Only typer and the settings are imported here, so the CLI's ``--help`` works without the ``serve`` extra.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from crossrank.core.settings import env_var


def _option(help_text: str, name: str, **kwargs: Any) -> Any:
    return typer.Option(help=help_text, envvar=env_var(name), **kwargs)


HostOption = Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the service to the network.",
                                         envvar=env_var("host"))]
PortOption = Annotated[int, typer.Option(help="TCP port.", envvar=env_var("port"))]
ApiKeyOption = Annotated[str | None, typer.Option(help="Require this key (Authorization: Bearer KEY) on every route "
                                                  "but /health and the web page's files; visible ASCII only.",
                                                  envvar=env_var("api_key"))]
ServedModelNameOption = Annotated[list[str] | None, _option(
    "A name requests may give as 'model' (repeatable; the first is the one responses and /v1/models show). "
    "Default: the model id and its last path component. Another name is a 404.", "served_model_name")]
AnyModelNameOption = Annotated[bool, _option("Answer requests naming any model with the served one.", "any_model_name")]
MaxClientBatchSizeOption = Annotated[int, typer.Option(help="Most documents in one request (more: 413).",
                                                       envvar=env_var("max_client_batch_size"))]
MaxQueuedPairsOption = Annotated[int, typer.Option(help="Most pairs waiting in the engine (more: 429).",
                                                   envvar=env_var("max_queued_pairs"))]
MaxQueueSecondsOption = Annotated[float, _option(
    "Queue bound in seconds of work: a request is refused (503 + Retry-After) when the queue ahead of it holds "
    "more than this at the recent throughput, or when it has not started within this. 0: no time bound.",
    "max_queue_seconds", min=0)]
PayloadLimitOption = Annotated[int, typer.Option(help="Largest request body in bytes (more: 413).",
                                                 envvar=env_var("payload_limit"))]
MaxDocumentCharsOption = Annotated[int, typer.Option(help="Longest query or document in characters (more: 413).",
                                                     envvar=env_var("max_document_chars"))]
MaxConnectionsOption = Annotated[int, _option("Most open connections; one more is answered 503 and closed.",
                                              "max_connections", min=1)]
HeaderTimeoutOption = Annotated[float, _option(
    "Seconds a connection has to send a complete request head (then 408 and closed).", "header_timeout", min=0.1)]
BodyTimeoutOption = Annotated[float, _option("Seconds a request body has to arrive in full (then 408 and closed).",
                                             "body_timeout", min=0.1)]
TimeoutKeepAliveOption = Annotated[int, _option("Seconds an idle kept-alive connection stays open.",
                                                "timeout_keep_alive", min=1)]
MaxHeaderBytesOption = Annotated[int, _option("Largest request head (request line and headers) in bytes (more: 431).",
                                              "max_header_bytes", min=1024)]
MaxHeadersOption = Annotated[int, _option("Most request headers (more: 431).", "max_headers", min=8)]
GracefulShutdownSecondsOption = Annotated[int, _option(
    "On SIGTERM/SIGINT, seconds open requests get to finish before they are cancelled.",
    "graceful_shutdown_seconds", min=0)]
HealthStallSecondsOption = Annotated[float, _option(
    "/health answers 503 when queued work has seen no forward pass finish for this long.",
    "health_stall_seconds", min=1)]
ReleaseMemorySecondsOption = Annotated[float, _option(
    "Give freed memory back to the OS: large blocks at once, and the rest of the heap this often while busy "
    "(glibc's mallopt and malloc_trim); 0: leave the allocator as it is.",
    "release_memory_seconds", min=0)]
CorsOriginOption = Annotated[list[str] | None, typer.Option(help="Allow browser calls from this origin (repeatable); "
                                                            "CORS is closed when none is given.",
                                                            envvar=env_var("cors_origin"))]
LogLevelOption = Annotated[str, typer.Option(help="uvicorn log level.", envvar=env_var("log_level"))]
DebugOption = Annotated[bool, _option("Show the traceback when the model cannot be loaded.", "debug")]

# Ray Serve
UseRayOption = Annotated[bool, typer.Option("--ray", help="Serve on Ray Serve (the same API; RAY_ADDRESS's cluster or "
                                            "a local one) instead of one uvicorn process.", envvar=env_var("ray"))]
ReplicasOption = Annotated[int, typer.Option(min=1, help="Ray: replicas (the minimum when --max-replicas is higher).",
                                             envvar=env_var("replicas"))]
MaxReplicasOption = Annotated[int | None, typer.Option(min=1, help="Ray: autoscale up to this many replicas on ongoing "
                                                       "requests.", envvar=env_var("max_replicas"))]
GpusPerReplicaOption = Annotated[float, typer.Option(min=0, help="Ray: GPUs per replica.",
                                                     envvar=env_var("gpus_per_replica"))]
CpusPerReplicaOption = Annotated[float, typer.Option(min=0, help="Ray: CPUs per replica.",
                                                     envvar=env_var("cpus_per_replica"))]
TargetOngoingRequestsOption = Annotated[float, typer.Option(min=1, help="Ray: autoscaling target of requests in "
                                                            "flight per replica.",
                                                            envvar=env_var("target_ongoing_requests"))]
