"""Device and dtype policy: CUDA (fp16, bf16 selectable), then MPS, then CPU with fp32.

On the CPU, bf16 runs where the CPU has native bf16 instructions (AVX-512 BF16 or AMX), int8 (dynamically quantised
linears, :mod:`crossrank.backends.quantized`) where it has VNNI or AMX; fp16 never."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from crossrank.core.errors import DeviceError

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "int8": torch.int8,
}

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags of native bf16 arithmetic; without one, oneDNN emulates bf16 and it is slower than fp32."""
CPU_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""/proc/cpuinfo flags of int8 dot products (VNNI, AMX), which int8 linears need to be faster than fp32."""


GPU_BATCH_TOKENS = 32768
"""Default token budget of one batch on a GPU: measured faster than 16,384 end to end (benchmarks/RESULTS.md), and
bge-reranker-v2-m3 in fp16 peaks at about 2.1 GB with it, under 2.5 GB."""
CPU_BATCH_TOKENS = 2048
"""Default token budget of one batch on the CPU: a ``[16384, 1536]`` feed-forward block is 100 MB, far beyond the
caches; on the 2-core CPU with a MiniLM-sized model 1-4k tokens measured ~12-20% faster than 16k
(benchmarks/RESULTS.md)."""


def default_batch_tokens(device: torch.device) -> int:
    """The token budget ``max_batch_tokens=0`` stands for on this device."""
    return CPU_BATCH_TOKENS if device.type == "cpu" else GPU_BATCH_TOKENS


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a usable ``torch.device``.

    ``auto`` picks CUDA, then MPS, then CPU. An explicit device that this machine lacks raises :class:`DeviceError`.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "with" if torch.version.cuda else "without"
            raise DeviceError(
                f"device={device!r} was asked for, but no CUDA device is visible (torch {torch.__version__} is built "
                f"{built} CUDA). Use device='auto' or 'cpu', or install a CUDA build of torch and check nvidia-smi."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type == "mps" and not _mps_available():
        raise DeviceError(f"device={device!r} was asked for, but MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return dev


def resolve_devices(devices: str | Sequence[str | torch.device]) -> list[torch.device]:
    """Several devices for one worker each: ``"all"`` (every visible CUDA device, else the one ``auto`` device),
    ``"0,1"`` (CUDA indexes), ``"cuda:0,cuda:1"``, a list such as ``["cuda:0", "cuda:1"]``, or ``"cpu,cpu"`` (two CPU
    workers; useful to test the multi-worker path). Each entry is checked as :func:`resolve_device` checks one."""
    if isinstance(devices, str):
        if devices.strip() == "all":
            if torch.cuda.is_available():
                return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
            return [resolve_device("auto")]
        entries: list[str | torch.device] = [d.strip() for d in devices.split(",") if d.strip()]
    else:
        entries = list(devices)
    if not entries:
        raise DeviceError("devices is empty: use all, a list of CUDA indexes such as 0,1, or device names")
    resolved = [resolve_device(f"cuda:{d}" if isinstance(d, str) and d.isdigit() else d) for d in entries]
    # A bare "cuda" means the current device; name it so two workers never think they differ when they don't.
    return [torch.device("cuda", torch.cuda.current_device()) if d.type == "cuda" and d.index is None else d
            for d in resolved]


def _cpuinfo_field(*names: str) -> str:
    """The first ``/proc/cpuinfo`` line named one of ``names``, after its colon ('' where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(names):
            return line.split(":", 1)[1].strip()
    return ""


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this machine's CPU, from ``/proc/cpuinfo`` (empty where there is none)."""
    return frozenset(_cpuinfo_field("flags", "Features").split())


def cpu_vendor() -> str:
    """The CPU's vendor as ``/proc/cpuinfo`` names it (``GenuineIntel``, ``AuthenticAMD``; '' where there is none)."""
    return _cpuinfo_field("vendor_id")


def _require_cpu_flags(dtype: str, wanted: tuple[str, ...], names: str) -> None:
    if not cpu_flags() & set(wanted):
        raise DeviceError(
            f"dtype={dtype!r} on CPU needs {names} (CPU flags {' or '.join(wanted)}), and this CPU has none of them; "
            "use dtype='fp32'."
        )


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``auto`` is fp16 on CUDA and MPS and fp32 on CPU. On the CPU: bf16 needs AVX-512 BF16 or AMX, int8 VNNI or AMX,
    and fp16 is refused; int8 (``torch.int8``: fp32 weights whose linears run quantised) is for the CPU only."""
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        key = str(dtype).lower()
        if key not in DTYPES:
            raise DeviceError(f"unknown dtype {dtype!r}: use auto, fp32, fp16, bf16 or int8")
        resolved = DTYPES[key]
    if resolved == torch.int8 and device.type != "cpu":
        raise DeviceError(f"dtype={dtype!r} runs on the CPU only; on {device.type} use fp16 or bf16")
    if device.type == "cpu":
        if resolved == torch.float16:
            raise DeviceError(
                f"dtype={dtype!r} on CPU is refused: fp16 is slow or unsupported there "
                "(\"LayerNormKernelImpl not implemented for 'Half'\"). Use fp32, or bf16/int8 on a CPU that has them."
            )
        if resolved == torch.bfloat16:
            _require_cpu_flags(str(dtype), CPU_BF16_FLAGS, "native bf16 instructions (AVX-512 BF16 or AMX)")
        elif resolved == torch.int8:
            _require_cpu_flags(str(dtype), CPU_INT8_FLAGS, "int8 dot-product instructions (VNNI or AMX)")
    if resolved == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("dtype='bf16' was asked for, but this GPU does not support bfloat16; use fp16")
    return resolved


def reduced_cpu_precision(device: torch.device, dtype: torch.dtype) -> bool:
    """True for bf16 and int8 on the CPU: an fp32 model whose encoder linears run in that precision
    (:mod:`crossrank.backends.quantized`)."""
    return device.type == "cpu" and dtype in (torch.bfloat16, torch.int8)


def weights_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype the model's weights are loaded in: fp32 for the CPU's bf16 and int8 (the linears' copies are made
    from them), else ``dtype``."""
    return torch.float32 if reduced_cpu_precision(device, dtype) else dtype


def dtype_name(dtype: torch.dtype) -> str:
    names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int8: "int8"}
    return names.get(dtype, str(dtype))


def is_out_of_memory(exc: BaseException) -> bool:
    """True only for an accelerator out-of-memory error, never for other RuntimeErrors."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom_type):
        return True
    # MPS reports OOM as a plain RuntimeError with this wording.
    return isinstance(exc, RuntimeError) and "MPS backend out of memory" in str(exc)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_memory_gib: float
    compute_capability: str


@dataclass(frozen=True)
class EnvironmentReport:
    """What `crossrank check` reports about the machine."""

    python: str
    torch_version: str
    torch_cuda: str | None
    cuda_available: bool
    mps_available: bool
    gpus: list[GpuInfo] = field(default_factory=list)


def environment_report() -> EnvironmentReport:
    gpus: list[GpuInfo] = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append(
                GpuInfo(i, props.name, round(props.total_memory / 2**30, 1), f"{props.major}.{props.minor}")
            )
    return EnvironmentReport(
        python=platform.python_version(),
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        cuda_available=torch.cuda.is_available(),
        mps_available=_mps_available(),
        gpus=gpus,
    )
