"""Find and load a cross-encoder's weights and tokenizer, and refuse what is not a reranker.

Resolution order: an existing local directory; ``./models/<name>``; the Hugging Face cache (``HF_HOME``,
``HF_HUB_OFFLINE`` honoured); a hub download with a progress bar.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from crossrank.core.errors import ModelNotFoundError, NotARerankerError
from crossrank.model.devices import weights_dtype

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ResolvedModel:
    """Where a model was found: ``source`` is one of local, models-dir, hf-cache, download."""

    name: str
    path: Path
    source: str


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _models_dir_candidates(name: str, models_dir: Path) -> list[Path]:
    candidates = [models_dir / name]
    if "/" in name:
        candidates.append(models_dir / name.rsplit("/", 1)[1])
    return candidates


def looks_like_path(name: str) -> bool:
    """A name only a local folder can have (absolute, ``./``, ``~``, a backslash, or more than one ``/``), never a
    Hugging Face id (``org/name``).

    >>> looks_like_path("/data/models/x"), looks_like_path("BAAI/bge-reranker-v2-m3")
    (True, False)
    """
    return name.startswith(("/", "./", "../", "~", ".\\")) or "\\" in name or name.count("/") > 1 or \
        Path(name).is_absolute()


def resolve_model(name: str, *, models_dir: str | Path = "models", revision: str | None = None) -> ResolvedModel:
    """Find ``name`` on disk, or download it; raise :class:`ModelNotFoundError` saying where it looked."""
    if not name or not str(name).strip():
        raise ModelNotFoundError("model name is empty: pass a local directory or a Hugging Face id")
    looked: list[str] = []
    path = Path(name).expanduser()
    if path.exists():
        if _is_model_dir(path):
            return ResolvedModel(name, path.resolve(), "local")
        raise ModelNotFoundError(f"{path} exists but holds no config.json: it is not a Hugging Face model directory")
    if looks_like_path(name):
        raise ModelNotFoundError(
            f"model folder {path} does not exist.\n"
            "To fix it, pass the folder that holds the model's config.json, tokenizer and weights "
            "(or a Hugging Face id such as BAAI/bge-reranker-v2-m3)."
        )
    looked.append(f"a local directory {path}")

    for candidate in _models_dir_candidates(name, Path(models_dir)):
        looked.append(f"{candidate}")
        if _is_model_dir(candidate):
            return ResolvedModel(name, candidate.resolve(), "models-dir")

    from huggingface_hub import constants, snapshot_download

    looked.append(f"the Hugging Face cache {constants.HF_HUB_CACHE}")
    try:
        cached = snapshot_download(name, revision=revision, local_files_only=True)
        return ResolvedModel(name, Path(cached), "hf-cache")
    except Exception as exc:  # any miss in the cache; the next step reports the real reason
        log.debug("not in the HF cache: %s", exc)

    if _offline():
        reason = "HF_HUB_OFFLINE is set, so no download was tried"
    else:
        try:
            log.info("downloading %s from the Hugging Face hub", name)
            downloaded = snapshot_download(
                name, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.bin"]
            )
            return ResolvedModel(name, Path(downloaded), "download")
        except Exception as exc:  # network errors come in many types; report them all the same way
            reason = f"the hub download failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    short = name.rsplit("/", 1)[-1]
    raise ModelNotFoundError(
        f"model {name!r} was not found. Looked in: " + "; ".join(looked) + f"; and {reason}.\n"
        "To fix it, do one of:\n"
        f"  - on a machine with internet: `hf download {name} --local-dir models/{short}` "
        f"and copy the folder to ./models/{short} here;\n"
        "  - pass a local directory: --model /path/to/model (or Reranker('/path/to/model'));\n"
        "  - point HF_HOME at a Hugging Face cache that already holds the model."
    )


def _architectures(config: Any) -> list[str]:
    return list(getattr(config, "architectures", None) or [])


def validate_config(config: Any, name: str) -> None:
    """Refuse configs that are not one-logit sequence classifiers, before loading any weights."""
    archs = _architectures(config)
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise NotARerankerError(
            f"{name!r} is a {', '.join(archs)}, not a cross-encoder: its config has no sequence-classification head. "
            "It looks like an embedding or language model; a reranker (e.g. BAAI/bge-reranker-v2-m3) is needed."
        )
    num_labels = getattr(config, "num_labels", 1)
    if num_labels != 1:
        raise NotARerankerError(
            f"{name!r} has {num_labels} output labels; crossrank scores with one-logit cross-encoders "
            "(num_labels=1), such as the bge-reranker and ms-marco cross-encoder families."
        )


def load_tokenizer(path: Path, name: str) -> tuple[Any, Any]:
    """The fast tokenizer and the config at ``path``, refusing configs that are not one-logit cross-encoders."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(path)
    validate_config(config, name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "is_fast", False):
        raise NotARerankerError(f"{name!r} has no fast tokenizer (tokenizer.json); crossrank needs one")
    return tokenizer, config


def load_model(path: Path, name: str, *, dtype: torch.dtype, device: torch.device) -> tuple[Any, Any]:
    """Load tokenizer and model from ``path``; refuse a classifier head that ``from_pretrained`` left random."""
    from transformers import AutoModelForSequenceClassification

    tokenizer, _ = load_tokenizer(path, name)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        path, output_loading_info=True, dtype=torch.float32
    )
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    if missing:
        raise NotARerankerError(
            f"{name!r} lacks trained weights for {', '.join(sorted(missing)[:4])}"
            f"{' …' if len(missing) > 4 else ''}: from_pretrained would initialise them randomly and every score "
            "would be noise. This is usually an embedding model loaded as a reranker; use a cross-encoder."
        )
    model.to(device=device, dtype=weights_dtype(dtype, device))
    model.eval()
    return tokenizer, model
