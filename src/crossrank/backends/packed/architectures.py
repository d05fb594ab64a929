"""Which Hugging Face models the packed backend runs: one-logit sequence classifiers of the RoBERTa/XLM-R/BERT family
with the standard layout."""

from __future__ import annotations

from typing import Any

import torch

_ROBERTA_TYPES = ("xlm-roberta", "roberta", "camembert")
_BERT_TYPES = ("bert",)
_GELU_ACTS = ("gelu", "gelu_new", "gelu_python", "relu")


def _base(model: Any) -> Any:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in _ROBERTA_TYPES:
        return getattr(model, "roberta", None)
    if model_type in _BERT_TYPES:
        return getattr(model, "bert", None)
    return None


def supports(model: Any) -> bool:
    """True for a one-logit ``*ForSequenceClassification`` of the RoBERTa/XLM-R/BERT family with the standard layout.

    Anything unusual (relative position embeddings, decoder mode, a custom head) is left to the padded backend.
    """
    config = getattr(model, "config", None)
    base = _base(model)
    if config is None or base is None or getattr(model, "classifier", None) is None:
        return False
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return False
    if getattr(config, "hidden_act", None) not in _GELU_ACTS:
        return False
    try:
        layer = base.encoder.layer[0]
        _ = (layer.attention.self.query, layer.attention.output.dense, layer.intermediate.dense, layer.output.dense)
        _ = (base.embeddings.word_embeddings, base.embeddings.position_embeddings, base.embeddings.LayerNorm)
    except AttributeError:
        return False
    if config.model_type in _BERT_TYPES:
        return getattr(base, "pooler", None) is not None and isinstance(model.classifier, torch.nn.Linear)
    return hasattr(model.classifier, "dense") and hasattr(model.classifier, "out_proj")
