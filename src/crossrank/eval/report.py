"""What an evaluation found: a table (first stage vs each reranker, deltas, significance, wins/losses, timings),
``report.json``, the runs as TREC files and a PNG chart."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crossrank.eval.metrics import PerQuery, compare, mean
from crossrank.eval.rerank import RerankStats
from crossrank.eval.trec import Run, write_trec_run


@dataclass(frozen=True)
class SystemResult:
    """One ranked run (the first stage, or a reranker's) with its per-query metrics."""

    name: str
    run: Run
    per_query: PerQuery
    seconds: float
    stats: RerankStats | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def slug(name: str) -> str:
    """A file-name-safe form of a model name or path (its last two parts)."""
    tail = "/".join(Path(name).parts[-2:]) if name else "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tail).strip("_") or "model"


def build_report(*, dataset: dict[str, Any], first_stage: SystemResult, rerankers: list[SystemResult],
                 metrics: list[str], top_k: int) -> dict[str, Any]:
    """The whole evaluation as plain JSON-able data (what ``report.json`` holds)."""
    entries = []
    for result in rerankers:
        comparisons = {m: asdict(compare(first_stage.per_query, result.per_query, m)) for m in metrics}
        for m in metrics:
            comparisons[m]["significant"] = comparisons[m]["p_value"] < 0.05
        stats = result.stats
        entries.append({
            "model": result.name,
            "settings": result.settings,
            "metrics": comparisons,
            "timings": {
                "seconds": result.seconds,
                "pairs": stats.pairs if stats else None,
                "scored": stats.scored if stats else None,
                "cached": stats.cached if stats else None,
                "ms_per_1000_pairs": stats.ms_per_1000_pairs if stats else None,
            },
        })
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset,
        "top_k": top_k,
        "metrics": metrics,
        "first_stage": {
            "name": first_stage.name,
            "seconds": first_stage.seconds,
            "metrics": {m: mean(first_stage.per_query[m]) for m in metrics},
        },
        "rerankers": entries,
        "per_query": {r.name: r.per_query for r in [first_stage, *rerankers]},
    }


def write_outputs(report: dict[str, Any], first_stage: SystemResult, rerankers: list[SystemResult],
                  output: Path) -> dict[str, Path]:
    """``report.json``, ``first-stage.trec``, ``reranked-<model>.trec`` per reranker and ``report.png``."""
    output.mkdir(parents=True, exist_ok=True)
    files = {"first_stage_run": write_trec_run(first_stage.run, output / "first-stage.trec", first_stage.name)}
    used: set[str] = set()
    for i, result in enumerate(rerankers):
        name = slug(result.name)
        name = f"{name}-{i}" if name in used else name
        used.add(name)
        files[f"run:{result.name}"] = write_trec_run(result.run, output / f"reranked-{name}.trec", name)
        report["rerankers"][i]["run_file"] = files[f"run:{result.name}"].name
    files["chart"] = write_chart(report, output / "report.png")
    report["files"] = {"first_stage_run": files["first_stage_run"].name, "chart": files["chart"].name}
    files["report"] = output / "report.json"
    files["report"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return files


def write_chart(report: dict[str, Any], path: Path) -> Path:
    """Left: each metric, first stage vs rerankers. Right: distribution of per-query deltas of the first metric."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    metrics: list[str] = report["metrics"]
    systems = [(report["first_stage"]["name"], report["first_stage"]["metrics"])]
    systems += [(r["model"], {m: r["metrics"][m]["reranked"] for m in metrics}) for r in report["rerankers"]]
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(systems)
    for i, (name, values) in enumerate(systems):
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(metrics))]
        bars.bar(xs, [values[m] for m in metrics], width, label=display_name(name))
    bars.set_xticks(range(len(metrics)), metrics)
    bars.set_ylabel("mean over queries")
    bars.set_title(f"{report['dataset'].get('name', '')}: first stage vs reranked (top {report['top_k']})")
    bars.legend(fontsize="small")
    first = metrics[0]
    base = report["per_query"][report["first_stage"]["name"]][first]
    for entry in report["rerankers"]:
        new = report["per_query"][entry["model"]][first]
        hist.hist([new.get(q, 0.0) - v for q, v in base.items()], bins=21, alpha=0.6,
                  label=display_name(entry["model"]))
    hist.axvline(0.0, color="black", linewidth=0.8)
    hist.set_xlabel(f"per-query change in {first} (reranked - first stage)")
    hist.set_ylabel("queries")
    hist.set_title("per-query deltas")
    if report["rerankers"]:
        hist.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def display_name(name: str) -> str:
    """How a reranker is named in tables and charts: a model folder by its own name (not a path cut short), a hub
    id as it is.

    >>> display_name("org/model")
    'org/model'
    """
    path = Path(name).expanduser()
    return path.resolve().name if path.is_dir() else name


def render_table(report: dict[str, Any]) -> Any:
    """A rich table: one row per system, one column per metric (value, delta, p-value, wins/losses), timings."""
    from rich.table import Table
    from rich.text import Text

    metrics: list[str] = report["metrics"]
    table = Table(title=Text(f"{report['dataset'].get('name', '')} · {report['first_stage']['name']} top "
                             f"{report['top_k']} · {report['dataset'].get('queries', '?')} queries"))
    table.add_column("system")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column(f"wins/losses ({metrics[0]})", justify="right")
    table.add_column("time", justify="right")
    first = report["first_stage"]
    table.add_row(Text(first["name"]), *[f"{first['metrics'][m]:.4f}" for m in metrics], "",
                  f"{first['seconds']:.1f} s")
    for entry in report["rerankers"]:
        cells = []
        for m in metrics:
            c = entry["metrics"][m]
            mark = "*" if c["significant"] else ""
            colour = "green" if c["delta"] > 0 else "red" if c["delta"] < 0 else "white"
            cells.append(f"{c['reranked']:.4f} [{colour}]{c['delta']:+.4f}{mark}[/] p={c['p_value']:.3f}")
        c0 = entry["metrics"][metrics[0]]
        timing = entry["timings"]
        per_k = timing["ms_per_1000_pairs"]
        speed = f" ({per_k / 1000:.2f} s/1k pairs)" if per_k is not None else ""
        table.add_row(Text(display_name(entry["model"])), *cells, f"{c0['wins']}/{c0['losses']} ({c0['ties']} ties)",
                      f"{timing['seconds']:.1f} s{speed}, {timing['cached']} cached")
    table.caption = "* p < 0.05, two-sided paired t-test over queries"
    past = report.get("metrics_past_top_k") or []
    if past:
        table.caption += (f"; {', '.join(past)} look past the top {report['top_k']} candidates, "
                          "which reranking only reorders")
    return table
