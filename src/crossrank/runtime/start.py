"""Loading a model onto the devices it runs on: one in this process, or one worker process per device."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from crossrank.backends.base import create_backend
from crossrank.core.settings import ModelSettings
from crossrank.model.devices import default_batch_tokens, resolve_device, resolve_dtype
from crossrank.model.loading import load_model, load_tokenizer
from crossrank.runtime.base import Runtime
from crossrank.runtime.device import DeviceRuntime


def load_device_runtime(path: str | Path, settings: ModelSettings, device: str | torch.device,
                        loaded: tuple[Any, Any] | None = None) -> DeviceRuntime:
    """The model at ``path`` on ``device`` as ``settings`` say (dtype, backend, batch budget), behind a runtime.
    ``loaded``: the tokenizer and model, where the caller has loaded them already."""
    dev = resolve_device(device)
    dtype = resolve_dtype(settings.dtype, dev)
    tokenizer, model = loaded or load_model(Path(path), settings.model, dtype=dtype, device=dev)
    backend = create_backend(settings.backend, model, pad_token_id=tokenizer.pad_token_id or 0, device=dev,
                             dtype=dtype)
    return DeviceRuntime(backend, settings.max_batch_tokens or default_batch_tokens(dev))


def start_runtime(path: Path, settings: ModelSettings, devices: Sequence[torch.device]
                  ) -> tuple[Any, Any, Runtime]:
    """The tokenizer, the model's config and a runtime on ``devices``: the model in this process for one device,
    in one worker process per device for several (this process then loads only the tokenizer and config)."""
    if len(devices) == 1:
        dtype = resolve_dtype(settings.dtype, devices[0])
        tokenizer, model = load_model(path, settings.model, dtype=dtype, device=devices[0])
        return tokenizer, model.config, load_device_runtime(path, settings, devices[0], (tokenizer, model))
    from crossrank.runtime.processes import ProcessRuntime

    tokenizer, config = load_tokenizer(path, settings.model)
    return tokenizer, config, ProcessRuntime(path, settings, [str(d) for d in devices])
