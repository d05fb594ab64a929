"""A Ray Serve deployment of the crossrank HTTP service: the same app, schemas and routes (``create_app``), one engine
with its own dynamic batching per replica, autoscaling on ongoing requests through Serve's own options.

* ``crossrank serve --ray --replicas 2 --gpus-per-replica 1`` (this module's :func:`run`),
* ``serve run crossrank.ray.serve:build_app model=BAAI/bge-reranker-v2-m3 max_replicas=4`` or a ``serve deploy``
  config naming ``import_path: crossrank.ray.serve:build_app`` (see ``examples/ray-serve.yaml``),
* ``build_deployment(settings, ...)`` from Python, for users' own Serve applications.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from crossrank.core.settings import ModelSettings, ServerSettings

log = logging.getLogger(__name__)

DEPLOYMENT_NAME = "crossrank"


@dataclass(frozen=True)
class ReplicaOptions:
    """How many replicas and what each reserves. ``max_replicas`` above ``replicas`` turns autoscaling on (Serve's
    ``autoscaling_config``: between ``replicas`` and ``max_replicas``, aiming at ``target_ongoing_requests`` requests
    in flight per replica). ``max_ongoing_requests`` must stay well above 1 so a replica's engine can batch requests."""

    replicas: int = 1
    max_replicas: int | None = None
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    target_ongoing_requests: float = 32.0
    max_ongoing_requests: int = 256

    def deployment_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": self.cpus_per_replica, "num_gpus": self.gpus_per_replica},
            "max_ongoing_requests": self.max_ongoing_requests,
        }
        if self.max_replicas is not None and self.max_replicas > self.replicas:
            options["autoscaling_config"] = {
                "min_replicas": self.replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.replicas
        return options


def deployment_class() -> Any:
    """The Serve deployment class (built on first use, so importing this module needs no Ray)."""
    from ray import serve

    class CrossrankDeployment:
        """One replica: builds the FastAPI app from ``create_app`` on the replica itself (the app holds locks and
        metrics that must not be pickled); its lifespan loads the model and starts the engine."""

        def __init__(self, settings: ServerSettings) -> None:
            self.settings = settings
            self.service: Any = None

        def __serve_build_asgi_app__(self) -> Any:
            from crossrank.server.app import create_app

            self.service = create_app(self.settings)
            return self.service

        async def check_health(self) -> None:
            """Serve's replica health check: the engine must answer one pair (once the model is loaded)."""
            if self.service is None or not getattr(self.service.state, "ready", False):
                return  # still starting: Serve waits for the constructor and lifespan separately
            engine = self.service.state.engine
            if engine is not None and not await engine.health_check():
                raise RuntimeError("the crossrank engine did not answer its health check")

    return serve.deployment(name=DEPLOYMENT_NAME)(serve.ingress()(CrossrankDeployment))


def build_deployment(settings: ServerSettings, options: ReplicaOptions = ReplicaOptions()) -> Any:
    """A bound Serve application: ``serve.run(build_deployment(settings, ReplicaOptions(replicas=2)))``."""
    return deployment_class().options(**options.deployment_options()).bind(settings)


def _coerce(value: Any, default: Any, name: str) -> Any:
    """``serve run`` passes ``key=value`` arguments as strings; YAML passes typed values."""
    if not isinstance(value, str) or isinstance(default, str):
        return tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name}={value!r}: expected true or false")
        return value.lower() in ("true", "1", "yes")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, tuple):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value  # optional fields (None default) are converted by the caller


def settings_from_args(args: dict[str, Any]) -> tuple[ServerSettings, ReplicaOptions]:
    """Split flat ``args`` (any ModelSettings, ServerSettings or ReplicaOptions field) into the three objects."""
    args = dict(args)
    picked: dict[type, dict[str, Any]] = {}
    for cls, instance in ((ModelSettings, ModelSettings()), (ServerSettings, ServerSettings()),
                          (ReplicaOptions, ReplicaOptions())):
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in args or (cls is ServerSettings and f.name == "model"):
                continue  # ServerSettings.model is the ModelSettings built from the model fields
            default = getattr(instance, f.name)
            raw = args.pop(f.name)
            if default is None and f.name in ("query_max_length", "max_replicas") and isinstance(raw, str):
                raw = int(raw)
            if default is None and f.name == "api_key" and raw == "":
                raw = None
            values[f.name] = _coerce(raw, default, f.name)
        picked[cls] = values
    if args:
        raise ValueError(f"unknown argument(s) for crossrank.ray.serve:build_app: {', '.join(sorted(args))}")
    model = ModelSettings(**picked[ModelSettings])
    server = ServerSettings(model=model, **picked[ServerSettings])
    return server, ReplicaOptions(**picked[ReplicaOptions])


def build_app(args: dict[str, Any]) -> Any:
    """Entry point for ``serve run crossrank.ray.serve:build_app key=value …`` and ``serve deploy`` configs.

    Keys: any field of :class:`crossrank.core.settings.ModelSettings` (``model``, ``dtype``, ``max_length``…),
    :class:`crossrank.core.settings.ServerSettings` (``api_key``, ``max_queued_pairs``…; ``host``/``port`` are Serve's
    ``http_options`` instead) and :class:`ReplicaOptions` (``replicas``, ``max_replicas``, ``gpus_per_replica``…).
    """
    server, replicas = settings_from_args(args)
    return build_deployment(server, replicas)


def run(settings: ServerSettings, options: ReplicaOptions) -> None:
    """``crossrank serve --ray``: join the Ray cluster (``RAY_ADDRESS``) or start a local one, serve on
    ``settings.host:settings.port`` until interrupted."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init()
    serve.start(http_options={"host": settings.host, "port": settings.port})
    log.info("crossrank on Ray Serve: http://%s:%d", settings.host, settings.port)
    serve.run(build_deployment(settings, options), name=DEPLOYMENT_NAME, route_prefix="/", blocking=True)
