"""Shared fixtures: small random cross-encoders built offline, once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossrank.testing import build_random_reranker, train_tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def tokenizer_for_tests():  # type: ignore[no-untyped-def]
    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_for_tests) -> Path:  # type: ignore[no-untyped-def]
    """2 layers, hidden 32: fast enough for every test that needs a model."""
    return build_random_reranker(
        tmp_path_factory.mktemp("tiny") / "tiny-reranker", init_std=0.3, tokenizer=tokenizer_for_tests
    )


@pytest.fixture(scope="session")
def mid_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_for_tests) -> Path:  # type: ignore[no-untyped-def]
    """4 layers, hidden 256: big enough that truncation and batching paths matter numerically."""
    return build_random_reranker(
        tmp_path_factory.mktemp("mid") / "mid-reranker", layers=4, hidden=256, heads=4, seed=1, init_std=0.1,
        tokenizer=tokenizer_for_tests,
    )


@pytest.fixture(scope="session")
def tiny_reranker(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from crossrank import Reranker

    return Reranker(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def ray_local():  # type: ignore[no-untyped-def]
    """One small local Ray instance for every Ray test of the session (2 CPUs, no dashboard), shut down at the end."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
