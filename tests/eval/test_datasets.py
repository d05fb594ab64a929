from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from crossrank.eval.datasets import DatasetNotFoundError, load_beir_dir, load_dataset, resolve_dataset


def test_loads_the_beir_layout(toy_dir: Path) -> None:
    data = load_beir_dir(toy_dir)
    assert data.name == "toy"
    assert len(data.corpus) == 6
    assert data.corpus["d1"] == "Cats cat dog"  # title joined before the text
    assert data.corpus["d2"] == "dog bird bird"
    assert set(data.queries) == {"q1", "q2", "q3"}  # q9 has no judgment in the split
    assert data.qrels["q1"] == {"d2": 2, "d1": 1}
    assert data.qrels["q2"] == {"d3": 1, "d4": 0}


def test_title_already_leading_the_text_is_not_repeated(tmp_path: Path, beir_writer) -> None:  # type: ignore[no-untyped-def]
    path = beir_writer(tmp_path / "t", corpus={"d1": ("wing flutter .", "wing flutter . at high speed")},
                       queries={"q": "wing"}, qrels=[("q", "d1", 1)])
    assert load_beir_dir(path).corpus["d1"] == "wing flutter . at high speed"


def test_a_folder_without_the_layout_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"qrels/test.tsv"):
        resolve_dataset(str(tmp_path / "empty"))


def test_downloads_once_then_finds_it_offline(tmp_path: Path, beir_writer, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    source = beir_writer(tmp_path / "src" / "toyset")
    archive = tmp_path / "toyset.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for file in source.rglob("*"):
            z.write(file, Path("toyset") / file.relative_to(source))
    monkeypatch.setenv("CROSSRANK_BEIR_URL", tmp_path.as_uri() + "/{name}.zip")
    seen: list[int] = []
    cache = tmp_path / "cache"
    data = load_dataset("toyset", cache_dir=cache, progress=lambda done, total: seen.append(done))
    assert data.path == cache / "toyset" and len(data.corpus) == 6
    assert seen and seen[-1] == archive.stat().st_size
    # Offline now: the source is gone, the cache answers.
    archive.unlink()
    again = load_dataset("toyset", cache_dir=cache, progress=lambda done, total: seen.append(-1))
    assert again.corpus == data.corpus and -1 not in seen


def test_clear_error_names_every_place_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSRANK_BEIR_URL", tmp_path.as_uri() + "/nowhere/{name}.zip")
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("scifact", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert str(tmp_path / "cache" / "scifact") in message
    assert "nowhere/scifact.zip" in message
    assert not (tmp_path / "cache" / "scifact").exists()


def test_reads_the_real_cranfield_collection(cranfield_dir: Path) -> None:
    data = load_beir_dir(cranfield_dir)
    assert len(data.corpus) == 1400
    assert 0 < len(data.queries) <= 225
    assert all(1 <= g <= 4 for docs in data.qrels.values() for g in docs.values())
