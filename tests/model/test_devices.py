"""Device and dtype policy: auto choices, honoured or refused explicit choices, OOM detection, environment report."""

from __future__ import annotations

import platform

import pytest
import torch

from crossrank import DeviceError, Reranker
from crossrank.model import devices
from crossrank.model.devices import (
    dtype_name,
    environment_report,
    is_out_of_memory,
    resolve_device,
    resolve_dtype,
)

CPU = torch.device("cpu")
HAS_CUDA = torch.cuda.is_available()


def test_auto_follows_what_this_machine_has() -> None:
    expected = "cuda" if HAS_CUDA else "mps" if devices._mps_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected


def test_auto_on_a_machine_without_accelerators_is_cpu_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    device = resolve_device("auto")
    assert device == CPU
    assert resolve_dtype("auto", device) == torch.float32
    assert resolve_dtype(None, device) == torch.float32


def test_auto_prefers_cuda_then_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "mps"


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_auto_dtype_on_accelerators_is_fp16(device: str) -> None:
    assert resolve_dtype("auto", torch.device(device)) == torch.float16


def test_cpu_is_always_available() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device(torch.device("cpu")) == CPU


@pytest.mark.parametrize("dtype", ["fp16", "float16", "half", torch.float16])
def test_fp16_on_cpu_refused(dtype: str | torch.dtype) -> None:
    with pytest.raises(DeviceError, match="on CPU is refused"):
        resolve_dtype(dtype, CPU)


def _flags(monkeypatch: pytest.MonkeyPatch, *flags: str) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(("avx2", "fma", *flags)))


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
@pytest.mark.parametrize("dtype", ["bf16", "bfloat16", torch.bfloat16])
def test_bf16_on_cpu_with_native_bf16(monkeypatch: pytest.MonkeyPatch, flag: str, dtype: str | torch.dtype) -> None:
    _flags(monkeypatch, flag)
    assert resolve_dtype(dtype, CPU) == torch.bfloat16


@pytest.mark.parametrize("dtype", ["bf16", torch.bfloat16])
def test_bf16_on_cpu_without_it_names_the_missing_instructions(monkeypatch: pytest.MonkeyPatch,
                                                               dtype: str | torch.dtype) -> None:
    _flags(monkeypatch, "avx512f", "avx512_vnni")
    with pytest.raises(DeviceError, match=r"needs native bf16 instructions \(AVX-512 BF16 or AMX\).*avx512_bf16 or "
                                          r"amx_bf16"):
        resolve_dtype(dtype, CPU)


@pytest.mark.parametrize("flag", ["avx512_vnni", "avx_vnni", "amx_int8"])
def test_int8_on_cpu_with_vnni_or_amx(monkeypatch: pytest.MonkeyPatch, flag: str) -> None:
    _flags(monkeypatch, flag)
    assert resolve_dtype("int8", CPU) == torch.int8
    assert devices.weights_dtype(torch.int8, CPU) == torch.float32
    assert devices.weights_dtype(torch.bfloat16, CPU) == torch.float32


def test_int8_on_cpu_without_vnni_names_the_missing_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    _flags(monkeypatch, "avx512f", "avx512_bf16")
    with pytest.raises(DeviceError, match=r"needs int8 dot-product instructions \(VNNI or AMX\)"):
        resolve_dtype("int8", CPU)


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_int8_is_for_the_cpu_only(device: str) -> None:
    with pytest.raises(DeviceError, match="runs on the CPU only"):
        resolve_dtype("int8", torch.device(device))
    assert devices.weights_dtype(torch.bfloat16, torch.device(device)) == torch.bfloat16


def test_cpu_flags_read_from_cpuinfo() -> None:
    flags = devices.cpu_flags()
    if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
        assert "sse2" in flags
    else:
        assert isinstance(flags, frozenset)


def test_cpu_vendor_read_from_cpuinfo() -> None:
    vendor = devices.cpu_vendor()
    if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
        assert vendor in ("GenuineIntel", "AuthenticAMD", "HygonGenuine", "CentaurHauls")
    else:
        assert isinstance(vendor, str)


@pytest.mark.parametrize("dtype", ["fp32", "float32", "FP32", torch.float32])
def test_fp32_on_cpu_accepted(dtype: str | torch.dtype) -> None:
    assert resolve_dtype(dtype, CPU) == torch.float32


def test_reranker_refuses_fp16_on_cpu_before_looking_for_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DeviceError, match="dtype='fp16' on CPU"):
        Reranker("no-such-org/no-such-model", device="cpu", dtype="fp16")


def test_explicit_cuda_is_honoured_or_refused_clearly() -> None:
    """Runs on both kinds of machine: resolves where a GPU exists, refuses with the reason where none does."""
    if HAS_CUDA:
        assert resolve_device("cuda").type == "cuda"
        assert resolve_device("cuda:0") == torch.device("cuda", 0)
    else:
        with pytest.raises(DeviceError) as info:
            resolve_device("cuda")
        msg = str(info.value)
        assert "no CUDA device is visible" in msg
        assert torch.__version__ in msg
        assert "device='auto' or 'cpu'" in msg


def test_cuda_refused_when_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA device is visible"):
        resolve_device("cuda:0")


def test_cuda_index_beyond_the_visible_gpus_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


def test_bf16_on_a_gpu_without_it_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(DeviceError, match="does not support bfloat16"):
        resolve_dtype("bf16", torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("bf16", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("fp16", torch.device("cuda")) == torch.float16


def test_mps_refused_when_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:x", ""])
def test_unknown_device_refused(device: str) -> None:
    with pytest.raises(DeviceError, match="device"):
        resolve_device(device)


def test_device_torch_knows_but_crossrank_does_not_run_on_refused() -> None:
    with pytest.raises(DeviceError, match="unsupported device 'meta'"):
        resolve_device("meta")


@pytest.mark.parametrize("dtype", ["int4", "fp8", "double", "float64"])
def test_unknown_dtype_refused(dtype: str) -> None:
    with pytest.raises(DeviceError, match=f"unknown dtype '{dtype}'"):
        resolve_dtype(dtype, CPU)


def test_dtype_names() -> None:
    dtypes = (torch.float32, torch.float16, torch.bfloat16, torch.int8)
    assert [dtype_name(d) for d in dtypes] == ["fp32", "fp16", "bf16", "int8"]
    assert dtype_name(torch.int16) == str(torch.int16)


def test_out_of_memory_is_recognised() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GiB)"))


@pytest.mark.parametrize("exc", [
    RuntimeError("CUDA error: device-side assert triggered"),
    RuntimeError("expected scalar type Float but found Half"),
    RuntimeError("out of memory"),  # a plain RuntimeError that merely mentions memory is not an accelerator OOM
    MemoryError(),
    ValueError("CUDA out of memory"),
])
def test_other_errors_are_not_out_of_memory(exc: BaseException) -> None:
    assert not is_out_of_memory(exc)


def test_environment_report_describes_this_machine() -> None:
    report = environment_report()
    assert report.python == platform.python_version()
    assert report.torch_version == torch.__version__
    assert report.torch_cuda == torch.version.cuda
    assert report.cuda_available == torch.cuda.is_available()
    assert report.mps_available == devices._mps_available()
    if report.cuda_available:
        assert len(report.gpus) == torch.cuda.device_count()
        for i, gpu in enumerate(report.gpus):
            assert gpu.index == i
            assert gpu.name == torch.cuda.get_device_name(i)
            assert gpu.total_memory_gib > 0
            major, minor = torch.cuda.get_device_capability(i)
            assert gpu.compute_capability == f"{major}.{minor}"
    else:
        assert report.gpus == []


def test_default_batch_tokens_by_device(tiny_model_dir):
    from crossrank.model.devices import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, default_batch_tokens

    assert default_batch_tokens(torch.device("cpu")) == CPU_BATCH_TOKENS
    assert default_batch_tokens(torch.device("cuda", 1)) == GPU_BATCH_TOKENS
    assert Reranker(str(tiny_model_dir), device="cpu").settings.max_batch_tokens == CPU_BATCH_TOKENS
    assert Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=77).settings.max_batch_tokens == 77
    with pytest.raises(ValueError, match="at least 1"):
        Reranker(str(tiny_model_dir), device="cpu", max_batch_tokens=-5)


def test_resolve_devices() -> None:
    from crossrank.model.devices import resolve_devices

    assert resolve_devices("cpu,cpu") == [torch.device("cpu")] * 2
    assert resolve_devices(["cpu", "cpu", "cpu"]) == [torch.device("cpu")] * 3
    if torch.cuda.is_available():
        assert resolve_devices("all") == [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        assert resolve_devices("0") == [torch.device("cuda", 0)]
    else:
        assert len(resolve_devices("all")) == 1
        with pytest.raises(DeviceError):
            resolve_devices("0,1")
    with pytest.raises(DeviceError):
        resolve_devices(" , ")
