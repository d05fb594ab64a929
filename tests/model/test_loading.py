"""Model resolution (local dir, ./models, HF cache, hub) and the refusal of models that are not rerankers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants as hf_constants

import crossrank
from crossrank import ModelNotFoundError, NotARerankerError, Reranker
from crossrank.model.loading import load_model, resolve_model, validate_config

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SRC = Path(crossrank.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Never reach the hub, never see the user's real cache or ./models."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    empty_cache = tmp_path / "empty-hf-cache"
    empty_cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(empty_cache))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def make_hub_cache(hub: Path, repo_id: str, model_dir: Path) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/files}."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for f in model_dir.iterdir():
        (snapshot / f.name).symlink_to(f)
    return snapshot


def tiny_config(**overrides: object):  # type: ignore[no-untyped-def]
    from transformers import XLMRobertaConfig

    values: dict[str, object] = dict(
        vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=130, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )
    values.update(overrides)
    return XLMRobertaConfig(**values)  # type: ignore[arg-type]


# --- resolution order ----------------------------------------------------------------------------------------------


def test_existing_local_directory_wins(tiny_model_dir: Path) -> None:
    resolved = resolve_model(str(tiny_model_dir))
    assert resolved.source == "local"
    assert resolved.path == tiny_model_dir.resolve()
    assert resolved.name == str(tiny_model_dir)


def test_relative_local_directory(tiny_model_dir: Path, _offline_and_isolated: Path) -> None:
    (_offline_and_isolated / "here").symlink_to(tiny_model_dir)
    resolved = resolve_model("here")
    assert resolved.source == "local"
    assert resolved.path == tiny_model_dir.resolve()


def test_models_dir_by_name(tiny_model_dir: Path, _offline_and_isolated: Path) -> None:
    (_offline_and_isolated / "models").mkdir()
    (_offline_and_isolated / "models" / "my-reranker").symlink_to(tiny_model_dir)
    resolved = resolve_model("my-reranker")
    assert resolved.source == "models-dir"
    assert resolved.path == tiny_model_dir.resolve()


def test_models_dir_by_last_part_of_hub_id(tiny_model_dir: Path, _offline_and_isolated: Path) -> None:
    (_offline_and_isolated / "models").mkdir()
    (_offline_and_isolated / "models" / "bge-reranker-v2-m3").symlink_to(tiny_model_dir)
    resolved = resolve_model("BAAI/bge-reranker-v2-m3")
    assert resolved.source == "models-dir"
    assert resolved.path == tiny_model_dir.resolve()


def test_models_dir_full_id_preferred_over_last_part(_offline_and_isolated: Path) -> None:
    full = _offline_and_isolated / "models" / "org" / "name"
    short = _offline_and_isolated / "models" / "name"
    for d in (full, short):
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
    assert resolve_model("org/name").path == full.resolve()


def test_custom_models_dir(tiny_model_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "weights"
    elsewhere.mkdir()
    (elsewhere / "m").symlink_to(tiny_model_dir)
    assert resolve_model("m", models_dir=elsewhere).source == "models-dir"
    with pytest.raises(ModelNotFoundError):
        resolve_model("m")  # not under the default ./models


def test_models_dir_entry_without_config_is_skipped(tiny_model_dir: Path, tmp_path: Path,
                                                    _offline_and_isolated: Path) -> None:
    (_offline_and_isolated / "models" / "org" / "tiny").mkdir(parents=True)  # empty: not a model
    make_hub_cache(Path(hf_constants.HF_HUB_CACHE), "org/tiny", tiny_model_dir)
    assert resolve_model("org/tiny").source == "hf-cache"


def test_hf_cache_is_used(tiny_model_dir: Path) -> None:
    snapshot = make_hub_cache(Path(hf_constants.HF_HUB_CACHE), "org/tiny", tiny_model_dir)
    resolved = resolve_model("org/tiny")
    assert resolved.source == "hf-cache"
    assert resolved.path.resolve() == snapshot.resolve()


def test_models_dir_comes_before_hf_cache(tiny_model_dir: Path, _offline_and_isolated: Path) -> None:
    make_hub_cache(Path(hf_constants.HF_HUB_CACHE), "org/tiny", tiny_model_dir)
    (_offline_and_isolated / "models").mkdir()
    (_offline_and_isolated / "models" / "tiny").symlink_to(tiny_model_dir)
    assert resolve_model("org/tiny").source == "models-dir"


def test_reranker_loads_from_hf_cache_and_scores_like_the_local_copy(tiny_model_dir: Path,
                                                                      tiny_reranker: Reranker) -> None:
    make_hub_cache(Path(hf_constants.HF_HUB_CACHE), "org/tiny", tiny_model_dir)
    cached = Reranker("org/tiny", device="cpu")
    assert cached.resolved.source == "hf-cache"
    pairs = [("中国的首都是哪里？", "北京是中国的政治中心。"), ("vitamin", "bone pain and fatigue")]
    assert cached.score(pairs) == tiny_reranker.score(pairs)


@pytest.mark.parametrize("variable", ["HF_HOME", "HF_HUB_CACHE"])
def test_hf_cache_location_from_environment(variable: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    """huggingface_hub reads HF_HOME / HF_HUB_CACHE when imported, so a fresh interpreter is the honest test."""
    root = tmp_path / "hf-root"
    hub = root / "hub" if variable == "HF_HOME" else root
    snapshot = make_hub_cache(hub, "org/tiny", tiny_model_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update({variable: str(root), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(SRC)})
    code = ("from crossrank.model.loading import resolve_model; r = resolve_model('org/tiny'); "
            "print(r.source); print(r.path)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    source, path = proc.stdout.split()
    assert source == "hf-cache"
    assert Path(path).resolve() == snapshot.resolve()


# --- nothing found -------------------------------------------------------------------------------------------------


def test_offline_and_nowhere_names_every_place_and_the_fixes() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("someorg/absent-model")
    msg = str(info.value)
    assert "a local directory someorg/absent-model" in msg
    assert str(Path("models") / "someorg" / "absent-model") in msg
    assert str(Path("models") / "absent-model") in msg
    assert hf_constants.HF_HUB_CACHE in msg
    assert "HF_HUB_OFFLINE" in msg
    assert "./models/absent-model" in msg
    assert "--model /path/to/model" in msg
    assert "HF_HOME" in msg
    assert isinstance(info.value, FileNotFoundError)  # callers catching the builtin still work


def test_reranker_raises_the_same_error() -> None:
    with pytest.raises(ModelNotFoundError, match="absent-model"):
        Reranker("someorg/absent-model", device="cpu")


def test_failed_download_is_reported_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls: list[bool] = []

    def fake_snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append(bool(kwargs.get("local_files_only")))
        if kwargs.get("local_files_only"):
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        raise ConnectionError("Name or service not known\nsecond line")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("someorg/absent-model")
    assert calls == [True, False]  # the cache first, then one download attempt
    msg = str(info.value)
    assert "hub download failed (ConnectionError: Name or service not known)" in msg
    assert "second line" not in msg
    assert "./models/absent-model" in msg


def test_download_is_the_last_resort(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    target = tmp_path / "downloaded"

    def fake_snapshot_download(repo_id: str, **kwargs: object) -> str:
        if kwargs.get("local_files_only"):
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        assert repo_id == "org/fresh"
        assert "*.safetensors" in kwargs["allow_patterns"]  # type: ignore[operator]
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    resolved = resolve_model("org/fresh")
    assert (resolved.source, resolved.path) == ("download", target)


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name_refused(name: str) -> None:
    with pytest.raises(ModelNotFoundError, match="empty"):
        resolve_model(name)


def test_directory_without_config_refused(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        resolve_model(str(folder))


# --- not a reranker --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedding_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_for_tests) -> Path:  # type: ignore[no-untyped-def]
    from transformers import XLMRobertaModel

    path = tmp_path_factory.mktemp("embedding") / "embedder"
    torch.manual_seed(0)
    XLMRobertaModel(tiny_config(vocab_size=len(tokenizer_for_tests), architectures=["XLMRobertaModel"])
                    ).save_pretrained(path)
    tokenizer_for_tests.save_pretrained(path)
    return path


def test_embedding_model_refused(embedding_model_dir: Path) -> None:
    with pytest.raises(NotARerankerError) as info:
        Reranker(str(embedding_model_dir), device="cpu")
    msg = str(info.value)
    assert "XLMRobertaModel" in msg
    assert "not a cross-encoder" in msg
    assert "embedding" in msg


def test_two_label_classifier_refused(tmp_path: Path, tokenizer_for_tests) -> None:  # type: ignore[no-untyped-def]
    from transformers import XLMRobertaForSequenceClassification

    config = tiny_config(vocab_size=len(tokenizer_for_tests), num_labels=2,
                         architectures=["XLMRobertaForSequenceClassification"])
    assert config.num_labels == 2
    XLMRobertaForSequenceClassification(config).save_pretrained(tmp_path / "nli")
    tokenizer_for_tests.save_pretrained(tmp_path / "nli")
    with pytest.raises(NotARerankerError, match="2 output labels"):
        Reranker(str(tmp_path / "nli"), device="cpu")


def test_classifier_config_over_headless_weights_refused(embedding_model_dir: Path, tmp_path: Path) -> None:
    """A seq-classification config whose weights lack the head: from_pretrained would make the head up."""
    fake = tmp_path / "fake-reranker"
    fake.mkdir()
    for f in embedding_model_dir.iterdir():
        if f.name != "config.json":
            (fake / f.name).symlink_to(f)
    config = json.loads((embedding_model_dir / "config.json").read_text())
    config["architectures"] = ["XLMRobertaForSequenceClassification"]
    config["id2label"], config["label2id"] = {"0": "LABEL_0"}, {"LABEL_0": 0}  # one logit, like a real reranker
    (fake / "config.json").write_text(json.dumps(config))
    with pytest.raises(NotARerankerError) as info:
        load_model(fake, "fake-reranker", dtype=torch.float32, device=torch.device("cpu"))
    msg = str(info.value)
    assert "classifier" in msg
    assert "initialise them randomly" in msg


def test_validate_config_accepts_a_one_logit_classifier() -> None:
    validate_config(tiny_config(num_labels=1, architectures=["XLMRobertaForSequenceClassification"]), "ok")
    validate_config(tiny_config(num_labels=1), "no architectures listed")  # nothing to judge: weights decide


def test_load_model_gives_eval_model_on_device(tiny_model_dir: Path) -> None:
    tokenizer, model = load_model(tiny_model_dir, "tiny", dtype=torch.float32, device=torch.device("cpu"))
    assert tokenizer.is_fast
    assert not model.training
    assert model.config.num_labels == 1
    assert {p.dtype for p in model.parameters()} == {torch.float32}
