"""A small dataset in the BEIR layout, written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOY_CORPUS = {
    "d1": ("Cats", "cat dog"),
    "d2": ("", "dog bird bird"),
    "d3": ("", "fish"),
    "d4": ("", "cat cat fish tree"),
    "d5": ("Weather", "rain and wind over the mountain river"),
    "d6": ("", "the solar energy market grows"),
}
TOY_QUERIES = {"q1": "cat bird", "q2": "fish", "q3": "solar energy", "q9": "an unjudged query"}
TOY_QRELS = [("q1", "d2", 2), ("q1", "d1", 1), ("q2", "d3", 1), ("q2", "d4", 0), ("q3", "d6", 1)]


def write_beir(path: Path, corpus: dict[str, tuple[str, str]] = TOY_CORPUS, queries: dict[str, str] = TOY_QUERIES,
               qrels: list[tuple[str, str, int]] = TOY_QRELS) -> Path:
    """Write corpus.jsonl, queries.jsonl and qrels/test.tsv (with BEIR's header line) under ``path``."""
    (path / "qrels").mkdir(parents=True, exist_ok=True)
    with (path / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for doc_id, (title, text) in corpus.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (path / "queries.jsonl").open("w", encoding="utf-8") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with (path / "qrels" / "test.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, did, grade in qrels:
            f.write(f"{qid}\t{did}\t{grade}\n")
    return path


@pytest.fixture
def toy_dir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "toy")


@pytest.fixture
def beir_writer():  # type: ignore[no-untyped-def]
    """The writer itself, for tests that need a dataset elsewhere (a zip to download, a changed corpus)."""
    return write_beir


@pytest.fixture(scope="session")
def cranfield_dir() -> Path:
    """The real Cranfield collection beside the checkout (../shared/data/cranfield)."""
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cranfield"
    if not path.is_dir():
        pytest.skip(f"the shared Cranfield copy is not at {path}")
    return path
