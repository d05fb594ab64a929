"""Score agreement between precisions, and the bounds the CPU's bf16 and int8 are held to on a model with outliers."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossrank.backends import quantized
from crossrank.eval.quality import ScoreAgreement, compare_dtypes, generated_queries, score_agreement
from crossrank.model import devices
from crossrank.testing import build_random_reranker


def test_identical_scores_agree_fully() -> None:
    ref = [[3.0, 1.0, 2.0, 0.5], [0.1, 0.2, 0.3]]
    a = score_agreement(ref, ref)
    assert (a.queries, a.pairs, a.max_rel_delta, a.p99_rel_delta) == (2, 7, 0.0, 0.0)
    assert a.spearman_min == a.spearman_median == 1.0
    assert a.top_k_overlap_min == a.top_k_overlap_mean == 1.0


def test_differences_are_relative_to_each_querys_spread() -> None:
    ref = [[0.0, 1.0, 2.0, 3.0], [0.0, 10.0, 20.0, 30.0]]
    cand = [[0.0, 1.0, 2.0, 3.3], [0.0, 10.0, 20.0, 33.0]]  # both 10% of their spread
    a = score_agreement(ref, cand)
    assert a.max_rel_delta == pytest.approx(0.1)
    assert a.spearman_min == 1.0


def test_a_reversed_ranking_and_a_lost_top_k() -> None:
    ref = [[float(i) for i in range(20)]]
    a = score_agreement(ref, [list(reversed(ref[0]))], top_k=10)
    assert a.spearman_min == pytest.approx(-1.0)
    assert a.top_k_overlap_min == 0.0
    assert a.max_rel_delta == pytest.approx(1.0)


@pytest.mark.parametrize(("ref", "cand", "match"), [
    ([[1.0, 2.0]], [[1.0, 2.0], [1.0, 2.0]], "same queries"),
    ([], [], "same queries"),
    ([[1.0, 2.0]], [[1.0, 2.0, 3.0]], "query 0: need the same two or more passages"),
    ([[1.0, 1.0]], [[1.0, 2.0]], "query 0: every reference logit is equal"),
])
def test_bad_inputs_refused(ref: list[list[float]], cand: list[list[float]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        score_agreement(ref, cand)


def test_to_dict_is_plain_numbers() -> None:
    a = ScoreAgreement(2, 10, 0.123456789, 0.1, 0.9, 0.95, 10, 0.8, 0.9)
    assert a.to_dict()["max_rel_delta"] == 0.12346
    assert a.to_dict()["queries"] == 2


# Bounds for a 4-layer, hidden-128 model with two outlier channels (LayerNorm gains 20x) and a spread head, 8 queries of
# 20 passages, against fp32 on the same inputs. Measured on a 2-core AVX-512 VNNI/BF16 CPU over three seeds of the
# model (seed 0 is the one tested): bf16 max |Δ|/spread 0.08-0.24, Spearman min 0.97-0.99, top-10 overlap min 0.8-0.9;
# int8 max |Δ|/spread 0.19-0.29, Spearman min 0.91-0.93, median 0.95-0.96, top-10 overlap min 0.8-0.9. The bounds
# leave about 1.5x that room (other CPUs round bf16 products differently); weights quantised with twice their scale
# give max |Δ|/spread > 1 and Spearman medians < 0.7, 1-bit weights worse, and both fail them.
BOUNDS = {
    "bf16": {"max_rel_delta": 0.35, "p99_rel_delta": 0.3, "spearman_min": 0.93, "spearman_median": 0.96,
             "top_k_overlap_mean": 0.85},
    "int8": {"max_rel_delta": 0.45, "p99_rel_delta": 0.45, "spearman_min": 0.85, "spearman_median": 0.9,
             "top_k_overlap_mean": 0.8},
}


def violations(dtype: str, a: ScoreAgreement) -> list[str]:
    return a.violations(BOUNDS[dtype])


def test_violations_name_the_broken_bounds() -> None:
    a = ScoreAgreement(1, 10, max_rel_delta=0.5, p99_rel_delta=0.1, spearman_min=0.8, spearman_median=0.95, top_k=10,
                       top_k_overlap_min=0.9, top_k_overlap_mean=0.9)
    assert a.violations({"max_rel_delta": 0.4, "p99_rel_delta": 0.2, "spearman_min": 0.9, "top_k_overlap_mean": 0.9}
                        ) == ["max_rel_delta 0.5000 (bound 0.4)", "spearman_min 0.8000 (bound 0.9)"]


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_reranker(tmp_path_factory.mktemp("outliers") / "m", layers=4, hidden=128, heads=4,
                                 outlier_channels=2, head_std=0.5, seed=0)


@pytest.fixture(autouse=True)
def _cpu_has_bf16_and_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(("avx512_bf16", "avx512_vnni")))


@pytest.mark.slow
def test_bf16_and_int8_within_bounds_on_a_model_with_outliers(outlier_model: Path) -> None:
    result = compare_dtypes(outlier_model, generated_queries(8, 20), ["bf16", "int8"])
    for dtype, agreement in result.items():
        assert not violations(dtype, agreement), (dtype, agreement)


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["twice_the_scale", "one_bit"])
def test_badly_quantised_int8_breaks_the_bounds(outlier_model: Path, monkeypatch: pytest.MonkeyPatch,
                                                broken: str) -> None:
    original = quantized.quantize_weight
    if broken == "twice_the_scale":
        monkeypatch.setattr(quantized, "quantize_weight", lambda w, b: original(w * 2, b))
    else:
        monkeypatch.setattr(quantized, "quantize_weight", lambda w, b: original(w.sign() * w.abs().mean(), b))
    agreement = compare_dtypes(outlier_model, generated_queries(8, 20), ["int8"])["int8"]
    assert len(violations("int8", agreement)) >= 2, agreement
