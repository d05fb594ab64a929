"""Retrieval metrics through ``ranx`` (not hand-written), and a paired comparison of two runs.

Metric names are ranx's: ``ndcg@10``, ``mrr@10``, ``recall@100``, ``precision@10``, ``map@100``, ``hit_rate@10``.
Every judged query counts; a query the run has no documents for scores 0 (``trec_eval -c`` convention), so a first
stage that finds nothing for a query is not flattered.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crossrank.eval.trec import Run

Qrels = dict[str, dict[str, int]]
PerQuery = dict[str, dict[str, float]]
"""``{metric: {query_id: value}}``."""


def parse_metrics(text: str) -> list[str]:
    """``"ndcg@10, mrr@10"`` → ``["ndcg@10", "mrr@10"]`` (lower-cased, duplicates dropped, order kept)."""
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    if not names:
        raise ValueError("no metric given; e.g. --metrics ndcg@10,mrr@10,recall@100")
    return list(dict.fromkeys(names))


def metric_depths(names: Sequence[str]) -> dict[str, int]:
    """Check each metric name with ranx itself (before any work is done) and return its cutoff (0: the whole list);
    a ValueError lists what ranx knows for a name it does not."""
    _ranx()
    from ranx.meta.evaluate import extract_metric_and_params
    from ranx.metrics import metric_switch

    depths: dict[str, int] = {}
    for name in names:
        try:
            metric, k, _ = extract_metric_and_params(name)
            metric_switch(metric)
        except ValueError as exc:
            raise ValueError(f"unknown metric {name!r}: {str(exc).replace('Metric ', '', 1)} "
                             "Write them as ndcg@10, mrr@10, recall@100.") from exc
        depths[name] = int(k) if not isinstance(k, float) else 0
    return depths


def shallow_metrics(depths: dict[str, int], top_k: int) -> list[str]:
    """The metrics that look deeper than the ``top_k`` candidates per query (or at the whole list), which the
    reranker cannot improve past what the first stage retrieved."""
    return [name for name, k in depths.items() if k == 0 or k > top_k]


def _ranx() -> Any:
    try:
        import ranx
    except ImportError as exc:
        raise ImportError("ranx is needed for crossrank eval: pip install 'crossrank[eval]'") from exc
    return ranx


def evaluate_per_query(qrels: Qrels, run: Run, metrics: Sequence[str]) -> PerQuery:
    """Each metric for each judged query of ``qrels``, computed by ranx."""
    ranx = _ranx()
    from numba.core.errors import NumbaWarning

    judged = {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items() if docs}
    # ranx refuses empty rankings; a query with none simply gets 0 below.
    ranked = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in judged and docs}
    result: PerQuery = {m: dict.fromkeys(judged, 0.0) for m in metrics}
    if not ranked:
        return result
    ranx_run = ranx.Run.from_dict(ranked)
    with warnings.catch_warnings():
        # numba's compile-time type-safety notes are ranx's internals, not ours to fix.
        warnings.simplefilter("ignore", NumbaWarning)
        ranx.evaluate(ranx.Qrels.from_dict(judged), ranx_run, list(metrics), make_comparable=True)
    for metric in metrics:
        for qid, value in ranx_run.scores[metric].items():
            result[metric][qid] = float(value)
    return result


def mean(values: dict[str, float]) -> float:
    # fsum rounds exactly, so the same values give the same mean in any order (a zero delta stays 0.0).
    return math.fsum(values.values()) / len(values) if values else 0.0


@dataclass(frozen=True)
class Comparison:
    """A reranked run against its baseline on one metric, over the same queries."""

    metric: str
    baseline: float
    reranked: float
    delta: float
    p_value: float
    wins: int
    losses: int
    ties: int

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def paired_p_value(baseline: Sequence[float], reranked: Sequence[float]) -> float:
    """Two-sided paired t-test (scipy); 1.0 when the two runs never differ."""
    from scipy import stats

    if len(baseline) < 2 or all(a == b for a, b in zip(baseline, reranked, strict=True)):
        return 1.0
    p = float(stats.ttest_rel(reranked, baseline).pvalue)
    return p if math.isfinite(p) else 1.0


def compare(baseline: PerQuery, reranked: PerQuery, metric: str) -> Comparison:
    """Means, difference, paired significance and per-query wins/losses/ties of ``reranked`` over ``baseline``."""
    queries = sorted(baseline[metric])
    a = [baseline[metric][q] for q in queries]
    b = [reranked[metric].get(q, 0.0) for q in queries]
    wins = sum(y > x for x, y in zip(a, b, strict=True))
    losses = sum(y < x for x, y in zip(a, b, strict=True))
    base_mean, new_mean = mean(baseline[metric]), math.fsum(b) / len(b) if b else 0.0
    return Comparison(metric, base_mean, new_mean, new_mean - base_mean, paired_p_value(a, b), wins, losses,
                      len(queries) - wins - losses)
