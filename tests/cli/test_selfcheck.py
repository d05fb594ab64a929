"""The self-check behind `crossrank check`: each step's status, and where it stops on a failure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hf_constants

from crossrank.cli.selfcheck import CheckResult, run_checks
from crossrank.core.settings import ModelSettings
from crossrank.model.devices import _mps_available


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "hf-cache").mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.chdir(tmp_path)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_all_steps_pass_on_the_tiny_model(tiny_model_dir: Path) -> None:
    results = list(run_checks(ModelSettings(model=str(tiny_model_dir), device="cpu")))
    names = [r.name for r in results]
    assert names[0] == "python / torch"
    assert names[-4:] == ["device", "model", "load", "score"]
    assert all(r.status in ("ok", "info") for r in results)
    assert all(r.fix is None for r in results)
    steps = by_name(results)
    assert steps["device"].detail == "cpu with fp32"
    assert str(tiny_model_dir.resolve()) in steps["model"].detail
    score = float(steps["score"].detail.split()[2])
    assert 0.0 <= score <= 1.0


def test_gpu_step_reports_what_is_there() -> None:
    """Honest on both kinds of machine: GPUs listed where visible, the CPU fallback as information where not."""
    results = list(run_checks(ModelSettings(model="unused", device="tpu")))
    gpu_steps = [r for r in results if r.name.startswith("GPU")]
    if torch.cuda.is_available():
        assert len(gpu_steps) == torch.cuda.device_count()
        assert all(r.status == "ok" and "compute capability" in r.detail for r in gpu_steps)
    elif _mps_available():
        assert gpu_steps == [CheckResult("GPU", "ok", "Apple MPS available")]
    else:
        assert [(r.status, r.detail.endswith("crossrank will use the CPU with fp32")) for r in gpu_steps] == [
            ("info", True)
        ]


def test_no_gpu_is_information_not_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("crossrank.model.devices._mps_available", lambda: False)
    gpu = by_name(list(run_checks(ModelSettings(model="unused", device="tpu"))))["GPU"]
    assert gpu.status == "info"
    assert "crossrank will use the CPU with fp32" in gpu.detail


def test_bad_device_stops_before_the_model() -> None:
    results = list(run_checks(ModelSettings(model="unused", device="tpu")))
    assert results[-1].name == "device"
    assert results[-1].status == "fail"
    assert results[-1].fix == "use --device auto"


def test_half_precision_on_cpu_fails_the_device_step() -> None:
    last = list(run_checks(ModelSettings(model="unused", device="cpu", dtype="fp16")))[-1]
    assert (last.name, last.status) == ("device", "fail")


def test_missing_model_fails_with_the_fix() -> None:
    results = list(run_checks(ModelSettings(model="nowhere-org/nowhere-model", device="cpu")))
    last = results[-1]
    assert (last.name, last.status) == ("model", "fail")
    assert "nowhere-org/nowhere-model" in last.detail
    assert "\n" not in last.detail  # the first line only; the rest is the fix
    assert last.fix is not None
    assert "./models/nowhere-model" in last.fix
    assert "HF_HOME" in last.fix


def test_model_that_is_not_a_reranker_fails_at_load(tmp_path: Path) -> None:
    from transformers import XLMRobertaConfig

    XLMRobertaConfig(num_labels=3, architectures=["XLMRobertaForSequenceClassification"]).save_pretrained(
        tmp_path / "three-labels"
    )
    results = list(run_checks(ModelSettings(model=str(tmp_path / "three-labels"), device="cpu")))
    assert [(r.name, r.status) for r in results[-2:]] == [("model", "ok"), ("load", "fail")]
    assert "NotARerankerError" in results[-1].detail
    assert results[-1].fix is not None
