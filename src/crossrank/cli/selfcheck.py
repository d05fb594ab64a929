"""The environment self-check behind ``crossrank check``: each step a result with a status and, on failure, the fix."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from crossrank.core.settings import ModelSettings


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # ok | info | fail
    detail: str
    fix: str | None = None


def _environment() -> Iterator[CheckResult]:
    """Python, torch and transformers, and the GPUs torch sees."""
    try:
        import torch  # noqa: F401
        import transformers

        from crossrank.model.devices import environment_report
    except ImportError as exc:
        yield CheckResult("install", "fail", f"cannot import a dependency: {exc}",
                          "reinstall crossrank in a clean virtualenv: pip install torch crossrank")
        return
    env = environment_report()
    yield CheckResult("python / torch", "ok",
                      f"Python {env.python}, torch {env.torch_version} (CUDA build: {env.torch_cuda or 'no'}), "
                      f"transformers {transformers.__version__}")
    if env.gpus:
        for gpu in env.gpus:
            yield CheckResult(f"GPU {gpu.index}", "ok", f"{gpu.name}, {gpu.total_memory_gib} GiB, "
                              f"compute capability {gpu.compute_capability}")
    elif env.mps_available:
        yield CheckResult("GPU", "ok", "Apple MPS available")
    else:
        why = "torch is a CPU-only build" if not env.torch_cuda else "no CUDA device is visible"
        yield CheckResult("GPU", "info", f"none: {why}; crossrank will use the CPU with fp32")


def run_checks(settings: ModelSettings) -> Iterator[CheckResult]:
    """Yield results one by one, stopping after the first failure that makes later steps meaningless."""
    installed = list(_environment())
    yield from installed
    if any(r.status == "fail" for r in installed):
        return
    import torch

    from crossrank.core.errors import CrossrankError
    from crossrank.model.devices import dtype_name, resolve_device, resolve_dtype
    from crossrank.model.loading import resolve_model

    try:
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
    except CrossrankError as exc:
        yield CheckResult("device", "fail", str(exc), "use --device auto")
        return
    yield CheckResult("device", "ok", f"{device} with {dtype_name(dtype)}")

    try:
        resolved = resolve_model(settings.model, models_dir=settings.models_dir)
    except CrossrankError as exc:
        yield CheckResult("model", "fail", str(exc).split("\n", 1)[0], str(exc).split("\n", 1)[-1].strip())
        return
    yield CheckResult("model", "ok", f"{settings.model} found at {resolved.path} ({resolved.source})")

    from crossrank.reranker import Reranker

    try:
        started = time.perf_counter()
        reranker = Reranker.from_settings(settings)
        load = time.perf_counter() - started
    except (CrossrankError, OSError, ValueError) as exc:
        yield CheckResult("load", "fail", f"{type(exc).__name__}: {exc}",
                          "check the model folder is complete (config.json, tokenizer.json, weights)")
        return
    yield CheckResult("load", "ok", f"{load:.1f} s, backend {reranker.settings.backend}")
    try:
        started = time.perf_counter()
        score = reranker.score([("what is the capital of France?", "Paris is the capital of France.")])[0]
        ms = (time.perf_counter() - started) * 1000
    except (CrossrankError, RuntimeError) as exc:
        yield CheckResult("score", "fail", f"{type(exc).__name__}: {exc}", "try --device cpu to isolate a GPU issue")
        return
    if not 0.0 <= score <= 1.0 or torch.isnan(torch.tensor(score)):
        yield CheckResult("score", "fail", f"sanity score {score} is not in [0, 1]", "report this as a bug")
        return
    yield CheckResult("score", "ok", f"sanity score {score:.4f} in {ms:.1f} ms")
