"""Load a retrieval benchmark in the BEIR layout, from a folder or by BEIR name (downloaded once into a cache).

The layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``) and
``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score`` with a header line). Only queries judged in the split
are kept, as BEIR does (``queries.jsonl`` holds the queries of every split).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crossrank.core.errors import CrossrankError

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
"""Where BEIR's datasets are published; ``CROSSRANK_BEIR_URL`` overrides it (a mirror, or ``file://`` in tests)."""

DownloadProgress = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, bytes_total_or_None)`` while a dataset downloads."""


class DatasetNotFoundError(CrossrankError, FileNotFoundError):
    """The dataset is neither a BEIR folder nor in the cache, and could not be downloaded."""


@dataclass(frozen=True)
class Dataset:
    """A retrieval benchmark: documents by id (title and text joined), queries by id, graded judgments."""

    name: str
    path: Path
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def default_cache_dir() -> Path:
    """``$CROSSRANK_DATA_DIR``, else ``$XDG_CACHE_HOME/crossrank/datasets``, else ``~/.cache/crossrank/datasets``."""
    if os.environ.get("CROSSRANK_DATA_DIR"):
        return Path(os.environ["CROSSRANK_DATA_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "crossrank" / "datasets"


def is_beir_dir(path: Path, split: str = "test") -> bool:
    return (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file() and \
        (path / "qrels" / f"{split}.tsv").is_file()


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_corpus(path: Path) -> dict[str, str]:
    """``corpus.jsonl`` → ``{doc_id: "title text"}`` (the title first, as BEIR evaluations feed rerankers)."""
    corpus: dict[str, str] = {}
    for row in _read_jsonl(path):
        title, text = str(row.get("title") or "").strip(), str(row.get("text") or "").strip()
        # Some collections (Cranfield) already begin the text with the title: don't count its words twice.
        joined = text if title and text.startswith(title) else f"{title} {text}".strip()
        corpus[str(row["_id"])] = joined
    return corpus


def read_queries(path: Path) -> dict[str, str]:
    """``queries.jsonl`` → ``{query_id: text}``."""
    return {str(row["_id"]): str(row.get("text") or "") for row in _read_jsonl(path)}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``qrels/<split>.tsv`` (with a header line) → ``{query_id: {doc_id: grade}}``."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) < 3 or not _is_number(row[2]):
                continue  # the header line BEIR writes, or a blank line
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    return qrels


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_beir_dir(path: Path, split: str = "test", name: str | None = None) -> Dataset:
    """Read a BEIR-layout folder; queries without judgments in ``split`` are dropped."""
    qrels = read_qrels(path / "qrels" / f"{split}.tsv")
    queries = {qid: text for qid, text in read_queries(path / "queries.jsonl").items() if qid in qrels}
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise ValueError(f"{path}: {len(missing)} judged queries are missing from queries.jsonl (first: {missing[0]})")
    return Dataset(name or path.name, path, read_corpus(path / "corpus.jsonl"), queries, qrels)


def download_beir(name: str, cache_dir: Path, url: str, progress: DownloadProgress | None = None) -> Path:
    """Download ``url`` (a BEIR zip) and unpack it to ``cache_dir/name``; a half-done download leaves nothing behind."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / f"{name}.zip"
        with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        with zipfile.ZipFile(archive) as z:
            z.extractall(Path(tmp) / "unpacked")
        unpacked = Path(tmp) / "unpacked"
        # BEIR's zips hold one folder named like the dataset; accept a flat zip too.
        candidates = [unpacked / name, unpacked, *sorted(unpacked.iterdir())]
        found = next((p for p in candidates if (p / "corpus.jsonl").is_file()), None)
        if found is None:
            raise ValueError(f"{url} does not hold a BEIR-layout dataset (corpus.jsonl, queries.jsonl, qrels/)")
        target = cache_dir / name
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(found), target)
    return target


def resolve_dataset(spec: str, *, cache_dir: Path | None = None, split: str = "test",
                    progress: DownloadProgress | None = None) -> Path:
    """Find the folder of ``spec``: an existing BEIR folder, else ``cache_dir/spec``, else a download of BEIR ``spec``.

    Raises :class:`DatasetNotFoundError` naming every place it looked when none works.
    """
    path = Path(spec).expanduser()
    if is_beir_dir(path, split):
        return path
    if path.is_dir():
        raise DatasetNotFoundError(
            f"{path} is a folder but not in the BEIR layout for split {split!r}: it needs corpus.jsonl, "
            f"queries.jsonl and qrels/{split}.tsv"
        )
    cache_dir = cache_dir or default_cache_dir()
    cached = cache_dir / spec
    if is_beir_dir(cached, split):
        return cached
    if "/" in spec or os.sep in spec:
        raise DatasetNotFoundError(f"no BEIR-layout folder at {path} (and {spec!r} is not a BEIR dataset name)")
    url = os.environ.get("CROSSRANK_BEIR_URL", BEIR_URL).format(name=spec)
    try:
        downloaded = download_beir(spec, cache_dir, url, progress)
    except Exception as exc:
        raise DatasetNotFoundError(
            f"dataset {spec!r} not found. Looked for a BEIR-layout folder at {path.resolve()}, then in the cache at "
            f"{cached}, then tried to download {url}: {exc}. Offline, download it on a machine with network "
            f"(`crossrank eval {spec} ...` there) and copy {cached} over, or set CROSSRANK_DATA_DIR."
        ) from exc
    if not is_beir_dir(downloaded, split):
        raise DatasetNotFoundError(f"{downloaded} (downloaded from {url}) has no qrels/{split}.tsv")
    return downloaded


def load_dataset(spec: str, *, cache_dir: Path | None = None, split: str = "test",
                 progress: DownloadProgress | None = None) -> Dataset:
    """Resolve ``spec`` (a folder or a BEIR name) and read it."""
    path = resolve_dataset(spec, cache_dir=cache_dir, split=split, progress=progress)
    return load_beir_dir(path, split, name=path.name)
