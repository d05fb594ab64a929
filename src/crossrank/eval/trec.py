"""TREC run files: ``qid Q0 docid rank score tag``, one line per retrieved document."""

from __future__ import annotations

from pathlib import Path

from crossrank.core.ranking import rank

Run = dict[str, dict[str, float]]
"""``{query_id: {doc_id: score}}``; higher scores rank first."""


def read_trec_run(path: Path, top_k: int | None = None) -> Run:
    """Read a TREC run file, keeping the ``top_k`` best-scored documents per query."""
    run: Run = {}
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 5:
                raise ValueError(f"{path}:{number}: a TREC run line needs 'qid Q0 docid rank score [tag]'")
            run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
    if top_k is not None:
        run = {qid: ranked_docs(docs, top_k) for qid, docs in run.items()}
    return run


def ranked_docs(docs: dict[str, float], top_k: int | None = None) -> dict[str, float]:
    """The documents best first (ties keep their order), cut to ``top_k``, through crossrank's one sort."""
    ids = list(docs)
    return {ids[r.index]: r.raw_score for r in rank([docs[d] for d in ids], ids, None, top_k)}


def write_trec_run(run: Run, path: Path, tag: str) -> Path:
    """Write ``run`` best first per query, ranks from 1; queries in sorted order for stable diffs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = "".join(c if not c.isspace() else "_" for c in tag) or "crossrank"
    with path.open("w", encoding="utf-8") as f:
        for qid in sorted(run):
            for position, (doc_id, score) in enumerate(ranked_docs(run[qid]).items(), 1):
                f.write(f"{qid} Q0 {doc_id} {position} {score:.6f} {tag}\n")
    return path
