"""Build small random cross-encoders offline, for tests and benchmarks (real weights cannot be downloaded everywhere).

``build_random_reranker(path)`` trains a Unigram tokenizer with the ``tokenizers`` library on a few hundred generated
Chinese and English sentences, saves it as an XLM-R tokenizer, and saves a randomly initialised
``XLMRobertaForSequenceClassification`` beside it with ``save_pretrained``. Random weights rank randomly: use these
models to check behaviour and parity with the reference, never ranking quality.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EN_WORDS = (
    "the a of to in is and for on with as by at from that this which model search query passage document "
    "answer question retrieval rank score vector keyword screen repair phone apple samsung capital city "
    "china beijing shanghai vitamin deficiency symptoms bone pain muscle fatigue python pandas excel "
    "file read skip rows library data analysis network neural learning machine language large small fast "
    "slow engine battery river mountain history science music weather coffee train airport hospital "
    "market school garden energy solar wind ocean "
).split()
ZH_CHARS = (
    "人工智能的发展趋势机器学习是一个分支中国首都哪里北京政治中心上海最大城市机场位于市区东部如何更换屏幕官方售后网点"
    "列表覆盖全国三星维修教程含工具清单苹果官网保修政策与费用说明数据分析库读取文件跳过前两行天气音乐历史科学医院学校"
)
EMOJI = "🙂🚀📚🔥✅🌏"


def generated_sentences(n: int = 600, seed: int = 0) -> Iterator[str]:
    """Deterministic mixed-language sentences: English word strings, Chinese character strings, some emoji."""
    rng = random.Random(seed)
    for i in range(n):
        kind = i % 3
        if kind == 0:
            yield " ".join(rng.choice(EN_WORDS) for _ in range(rng.randint(4, 18))).capitalize() + "."
        elif kind == 1:
            yield "".join(rng.choice(ZH_CHARS) for _ in range(rng.randint(6, 30))) + "。"
        else:
            words = [rng.choice(EN_WORDS) for _ in range(rng.randint(3, 10))]
            yield " ".join(words) + " " + "".join(rng.choice(ZH_CHARS) for _ in range(5)) + rng.choice(EMOJI)


def train_tokenizer(vocab_size: int = 1000, seed: int = 0) -> Any:
    """An XLM-R tokenizer (Unigram, metaspace) trained on generated sentences, with XLM-R's special token ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", initial_alphabet=list(ZH_CHARS + EMOJI)
    )
    tok.train_from_iterator(generated_sentences(seed=seed), trainer=trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
    return XLMRobertaTokenizer(vocab=vocab, model_max_length=512)


def build_random_reranker(
    path: str | Path,
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 2,
    intermediate: int | None = None,
    max_positions: int = 514,
    vocab_size: int = 1000,
    seed: int = 0,
    init_std: float = 0.02,
    tokenizer: Any = None,
    outlier_channels: int = 0,
    outlier_scale: float = 20.0,
    head_std: float | None = None,
) -> Path:
    """Save a random one-logit XLM-R cross-encoder and its tokenizer to ``path`` and return the path.

    ``init_std`` is the spread of the random weights: 0.02 (Hugging Face's default) gives realistic activations for
    benchmarks but near-identical scores; tests use ~0.3 so that scores spread out and orderings are meaningful.

    ``outlier_channels`` hidden channels get LayerNorm gains ``outlier_scale`` times the rest in every layer, as trained
    transformers have (a few residual channels with activations 20-100x the others): what breaks naive per-token
    int8/fp8 quantisation, and what random weights alone would hide. ``head_std`` sets the spread of the classifier's
    weights, so that logits differ between pairs as a trained head's do.
    """
    path = Path(path)
    tokenizer = tokenizer if tokenizer is not None else train_tokenizer(vocab_size, seed)
    tokenizer.model_max_length = max_positions - 2
    model = _random_model(len(tokenizer), layers=layers, hidden=hidden, heads=heads, intermediate=intermediate,
                          max_positions=max_positions, seed=seed, init_std=init_std)
    _shape_weights(model, hidden=hidden, seed=seed, outlier_channels=outlier_channels, outlier_scale=outlier_scale,
                   head_std=head_std)
    model.eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _random_model(vocab_size: int, *, layers: int, hidden: int, heads: int, intermediate: int | None,
                  max_positions: int, seed: int, init_std: float) -> Any:
    """A one-logit XLMRobertaForSequenceClassification, seeded with ``seed``, its matrices drawn with ``init_std``."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    config = XLMRobertaConfig(  # type: ignore[call-arg]
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate or hidden * 4,
        max_position_embeddings=max_positions,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
        architectures=["XLMRobertaForSequenceClassification"],
    )
    torch.manual_seed(seed)
    model = XLMRobertaForSequenceClassification(config)
    if init_std != config.initializer_range:
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() > 1:
                    param.normal_(0.0, init_std)
    return model


def _shape_weights(model: Any, *, hidden: int, seed: int, outlier_channels: int, outlier_scale: float,
                   head_std: float | None) -> None:
    """Give ``outlier_channels`` channels LayerNorm gains ``outlier_scale`` times the rest, and the classifier's
    matrices the spread ``head_std`` (see :func:`build_random_reranker`)."""
    import torch

    with torch.no_grad():
        if outlier_channels:
            channels = torch.randperm(hidden, generator=torch.Generator().manual_seed(seed))[:outlier_channels]
            for name, param in model.named_parameters():
                if "LayerNorm.weight" in name:
                    param[channels] *= outlier_scale
        if head_std is not None:
            for param in model.classifier.parameters():
                if param.dim() > 1:
                    param.normal_(0.0, head_std)
