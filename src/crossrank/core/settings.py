"""One frozen settings object. Every field is also a ``CROSSRANK_<FIELD>`` environment variable for the CLI.

The modes (dtype, backend, long passages) are ``Literal`` types: the one list of each, which the CLI shows as its
choices and :class:`ModelSettings` checks, so a new dtype is one more name in :data:`Dtype`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Literal, get_args

DEFAULT_MODEL = "BAAI/bge-reranker-v2-m3"
ENV_PREFIX = "CROSSRANK_"

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` with the numbers of pairs scored so far and in all."""

Dtype = Literal["auto", "fp32", "fp16", "bf16", "int8"]
"""``auto``: fp16 on GPU, fp32 on CPU. ``int8``: dynamically quantised linears, CPU only."""
BackendName = Literal["auto", "packed", "padded"]
LongPassages = Literal["truncate", "chunk"]
"""``truncate`` (FlagReranker's behaviour) or ``chunk`` (score windows of the passage, keep the best)."""

DTYPES: tuple[str, ...] = get_args(Dtype)
BACKENDS: tuple[str, ...] = get_args(BackendName)
LONG_PASSAGES: tuple[str, ...] = get_args(LongPassages)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """A ValueError naming the choices when ``value`` is none of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


@dataclass(frozen=True)
class ModelSettings:
    """How to load and run the model."""

    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: Dtype = "auto"
    max_length: int = 512
    query_max_length: int | None = None
    max_batch_tokens: int = 0  # 0: by device (devices.default_batch_tokens)
    backend: BackendName = "auto"
    long_passages: LongPassages = "truncate"
    chunk_overlap: int = 32
    models_dir: str = "models"
    devices: str = ""  # several devices, one worker each ("all", "0,1", "cpu,cpu"); empty: just `device`

    def __post_init__(self) -> None:
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("backend", self.backend, BACKENDS)
        check_choice("long_passages", self.long_passages, LONG_PASSAGES)


@dataclass(frozen=True)
class ServerSettings:
    """How ``crossrank serve`` listens and protects itself."""

    model: ModelSettings = field(default_factory=ModelSettings)
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_client_batch_size: int = 10_000
    max_queued_pairs: int = 100_000
    payload_limit: int = 8 * 2**20
    max_document_chars: int = 1_000_000
    cors_origins: tuple[str, ...] = ()
    max_queue_seconds: float | None = 30.0  # a request that cannot start within this answers 503; None: no bound
    health_stall_seconds: float = 120.0  # /health is 503 when queued work saw no forward pass finish for this long
    served_model_names: tuple[str, ...] = ()  # names a request's "model" may give; empty: the model id, last part
    any_model_name: bool = False  # answer any "model" name with the served model
    max_connections: int = 512  # open connections; more are answered 503 and closed
    timeout_keep_alive: int = 5  # idle seconds between requests on a kept-alive connection
    header_timeout: float = 10.0  # seconds for a connection to deliver a complete request head
    body_timeout: float = 30.0  # seconds for the request body to arrive in full once the head has
    max_header_bytes: int = 16 * 2**10  # request line plus headers
    max_headers: int = 100
    graceful_shutdown_seconds: int = 30  # on SIGTERM, open requests get this long before they are cancelled
    release_memory_seconds: float = 10.0  # return freed heap to the OS this often while busy (glibc); 0: never


def env_var(name: str) -> str:
    """``max_batch_tokens`` → ``CROSSRANK_MAX_BATCH_TOKENS``."""
    return ENV_PREFIX + name.upper()


def model_setting_names() -> list[str]:
    """The fields of :class:`ModelSettings`, in order."""
    return [f.name for f in fields(ModelSettings)]
