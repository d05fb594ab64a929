"""A resumable on-disk cache of scored pairs (sqlite3), keyed by model, query id and document id.

Scores are written and committed chunk by chunk while reranking, so a run that crashes after an hour resumes where
it stopped. Each row also keeps a hash of the two texts: a cached score is used only if the texts are the ones that
were scored, so a changed corpus, or another dataset with the same ids in the same cache, is scored afresh.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    model TEXT NOT NULL,
    query_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (model, query_id, doc_id)
)
"""


def text_hash(query: str, passage: str) -> str:
    return hashlib.blake2b(f"{query}\x00{passage}".encode(), digest_size=12).hexdigest()


class ScoreCache:
    """``ScoreCache(path)``: ``lookup`` what is known, ``store`` new scores (committed at once)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")  # a crash mid-write never corrupts what was committed
        self.db.execute(SCHEMA)
        self.db.commit()

    def lookup(self, model: str, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str], float]:
        """``keys`` are ``(query_id, doc_id, text_hash)``; returns ``{(query_id, doc_id): score}`` for the hits."""
        wanted = {(q, d): h for q, d, h in keys}
        found: dict[tuple[str, str], float] = {}
        rows = self.db.execute("SELECT query_id, doc_id, text_hash, score FROM scores WHERE model = ?", (model,))
        for qid, did, h, score in rows:
            if wanted.get((qid, did)) == h:
                found[(qid, did)] = float(score)
        return found

    def store(self, model: str, rows: Iterable[tuple[str, str, str, float]]) -> None:
        """Insert or replace ``(query_id, doc_id, text_hash, score)`` rows and commit."""
        self.db.executemany(
            "INSERT OR REPLACE INTO scores (model, query_id, doc_id, text_hash, score) VALUES (?, ?, ?, ?, ?)",
            [(model, q, d, h, float(s)) for q, d, h, s in rows],
        )
        self.db.commit()

    def count(self, model: str | None = None) -> int:
        if model is None:
            return int(self.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
        return int(self.db.execute("SELECT COUNT(*) FROM scores WHERE model = ?", (model,)).fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ScoreCache:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
