"""The packed backend scores like the padded reference and like FlagReranker (fp32, CPU), on XLM-R and BERT models."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import crossrank.backends.packed.backend as packed_backend
import crossrank.backends.packed.graphs as packed_graphs
import crossrank.backends.packed.layers as packed_layers
from crossrank import Reranker
from crossrank.backends import fused
from crossrank.backends.packed import PackedBackend, cpu_linear, gemm_epilogue, supports
from crossrank.testing import generated_sentences

TOL = 1e-5


def _pairs(n: int, seed: int, max_words: int = 40) -> list[tuple[str, str]]:
    """Mixed lengths: empty passages, one-word ones, and passages long enough to be truncated."""
    rng = random.Random(seed)
    sentences = list(generated_sentences(300, seed=seed))
    pairs = []
    for i in range(n):
        query = rng.choice(sentences)
        words = rng.choice([0, 1, 3, 10, max_words])
        passage = " ".join(rng.choice(sentences) for _ in range(rng.randint(0, words)))
        pairs.append((query if i % 7 else query * 3, passage))
    return pairs


def _close(a: list[float], b: list[float], tol: float = TOL) -> None:
    assert len(a) == len(b)
    worst = max(abs(x - y) for x, y in zip(a, b, strict=True))
    assert worst < tol, worst


@pytest.fixture(scope="module", params=["tiny", pytest.param("mid", marks=pytest.mark.slow)])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return Path(request.getfixturevalue(f"{request.param}_model_dir"))


@pytest.fixture(scope="module")
def bert_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random BertForSequenceClassification with a WordPiece tokenizer trained here (token type ids matter)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=800, special_tokens=specials)
    tok.train_from_iterator(generated_sentences(400), trainer)
    tokenizer = BertTokenizerFast(tokenizer_object=tok, model_max_length=128)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=128, type_vocab_size=2, num_labels=1, pad_token_id=0,
    )
    torch.manual_seed(3)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
        model.bert.embeddings.token_type_embeddings.weight.normal_(0.0, 1.0)  # make a wrong type id visible
    path = tmp_path_factory.mktemp("bert") / "bert-reranker"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_auto_picks_packed_for_xlmr(tiny_model_dir: Path) -> None:
    r = Reranker(str(tiny_model_dir), device="cpu")
    assert r.runtime.backend.name == "packed"
    assert r.runtime.backend.padded is False


def test_packed_equals_padded_and_flagreranker(model_dir: Path) -> None:
    from FlagEmbedding import FlagReranker

    pairs = _pairs(60, seed=1)
    ref = FlagReranker(str(model_dir), use_fp16=False, devices="cpu").compute_score(pairs)
    packed = Reranker(str(model_dir), device="cpu", backend="packed").compute_score(pairs)
    padded = Reranker(str(model_dir), device="cpu", backend="padded").compute_score(pairs)
    _close(packed, ref)
    _close(padded, ref)


def test_long_inputs_and_small_budget(model_dir: Path) -> None:
    """Passages far beyond max_length, and a token budget so small that most batches hold one sequence."""
    pairs = [(q, (p + " ") * 60) for q, p in _pairs(12, seed=2)]
    padded = Reranker(str(model_dir), device="cpu", backend="padded", max_length=512).compute_score(pairs)
    packed = Reranker(str(model_dir), device="cpu", backend="packed", max_length=512, max_batch_tokens=700)
    assert max(len(e) for e in packed.encode(pairs)) == 512
    _close(packed.compute_score(pairs), padded)


def test_chunked_passages(model_dir: Path) -> None:
    pairs = _pairs(10, seed=4, max_words=200)
    kwargs = {"device": "cpu", "max_length": 64, "long_passages": "chunk", "chunk_overlap": 8}
    packed = Reranker(str(model_dir), backend="packed", **kwargs)  # type: ignore[arg-type]
    padded = Reranker(str(model_dir), backend="padded", **kwargs)  # type: ignore[arg-type]
    assert len(packed.encode(pairs)) > len(pairs)  # some passages really were split
    a = packed.rerank("query about data analysis", [p for _, p in pairs])
    b = padded.rerank("query about data analysis", [p for _, p in pairs])
    assert [(x.index, x.chunk) for x in a] == [(y.index, y.chunk) for y in b]
    _close([x.raw_score for x in a], [y.raw_score for y in b])


def test_one_batch_matches_each_sequence_alone(tiny_model_dir: Path) -> None:
    """Packing must not leak attention between sequences: a batch equals each sequence run by itself."""
    r = Reranker(str(tiny_model_dir), device="cpu", backend="packed")
    encoded = r.encode(_pairs(9, seed=5))
    together = r.runtime.backend.forward(encoded)
    alone = torch.cat([r.runtime.backend.forward([e]) for e in encoded])
    assert together.dtype == torch.float32 and together.shape == (len(encoded),)
    torch.testing.assert_close(together, alone, rtol=0, atol=TOL)


def test_bert_with_token_types(bert_model_dir: Path) -> None:
    from FlagEmbedding import FlagReranker

    pairs = _pairs(30, seed=6)
    packed = Reranker(str(bert_model_dir), device="cpu", max_length=128)
    assert packed.runtime.backend.name == "packed"
    assert packed.encode(pairs[:1])[0].token_type_ids is not None
    ref = FlagReranker(str(bert_model_dir), use_fp16=False, devices="cpu", max_length=128).compute_score(pairs)
    padded = Reranker(str(bert_model_dir), device="cpu", max_length=128, backend="padded").compute_score(pairs)
    _close(packed.compute_score(pairs), ref)
    _close(padded, ref)


def test_unknown_architecture_falls_back_to_padded() -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, num_labels=1)
    )
    assert not supports(model)
    with pytest.raises(ValueError, match="does not know"):
        PackedBackend(model, device=torch.device("cpu"), dtype=torch.float32)


def test_varlen_attention_refused_on_cpu(tiny_reranker: Reranker) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        PackedBackend(tiny_reranker.runtime.backend.model, device=torch.device("cpu"), dtype=torch.float32,
                      attention="varlen")


def _ops_run(fn: Callable[[], object]) -> set[str]:
    from torch.profiler import ProfilerActivity, profile

    # CPU ops only; acc_events: on a CUDA host torch 2.11's profiler otherwise warns that it clears events per cycle
    with profile(activities=[ProfilerActivity.CPU], acc_events=True) as prof:
        fn()
    return {event.name for event in prof.events()}


def test_cpu_attention_uses_the_fused_kernel(tiny_reranker: Reranker) -> None:
    """SDPA given 3-D inputs silently falls back to the unfused math kernel on CPU (~7x slower): keep it 4-D."""
    backend = PackedBackend(tiny_reranker.runtime.backend.model, device=torch.device("cpu"), dtype=torch.float32)
    encoded = tiny_reranker.encode(_pairs(4, seed=7))
    ops = _ops_run(lambda: backend.forward(encoded))
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops
    assert "aten::_scaled_dot_product_attention_math" not in ops


@pytest.mark.parametrize(("vendor", "onednn"), [("GenuineIntel", False), ("AuthenticAMD", True)])
def test_cpu_linear_by_vendor_and_equal_to_f_linear(monkeypatch: pytest.MonkeyPatch, vendor: str, onednn: bool) -> None:
    monkeypatch.setattr(packed_layers, "cpu_vendor", lambda: vendor)
    linear = cpu_linear(torch.device("cpu"), torch.float32)
    if not torch.backends.mkldnn.is_available():
        assert linear is F.linear
        return
    assert (linear is packed_layers._onednn_linear) is onednn
    gen = torch.Generator().manual_seed(1)
    for rows in (1, 7, 300):  # one row per sequence in the last layer; a big packed batch
        x, w = torch.randn(rows, 48, generator=gen), torch.randn(80, 48, generator=gen)
        b = torch.randn(80, generator=gen)
        torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), rtol=0, atol=1e-4)
    assert cpu_linear(torch.device("cuda"), torch.float16) is F.linear


def test_cpu_linear_falls_back_when_the_private_op_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> torch.Tensor:
        raise RuntimeError("op changed")

    monkeypatch.setattr(packed_layers, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(packed_layers, "_onednn_linear", broken)
    assert cpu_linear(torch.device("cpu"), torch.float32) is F.linear
    assert cpu_linear(torch.device("cpu"), torch.bfloat16) is F.linear


def test_gemm_epilogue_only_in_half_precision_on_cuda(tiny_reranker: Reranker) -> None:
    """CPU and fp32 keep the model's own exact activation (the epilogue's GELU is the tanh form); the CPU applies it in
    place."""
    assert gemm_epilogue("gelu", torch.device("cpu"), torch.float32) is None
    assert gemm_epilogue("gelu", torch.device("cpu"), torch.bfloat16) is None
    assert gemm_epilogue("gelu", torch.device("cuda"), torch.float32) is None
    assert gemm_epilogue("silu", torch.device("cuda"), torch.float16) is None
    backend = PackedBackend(tiny_reranker.runtime.backend.model, device=torch.device("cpu"), dtype=torch.float32)
    x, w, b = torch.randn(5, 8), torch.randn(16, 8), torch.randn(16)
    assert backend.up is not None and torch.equal(backend.up(x, w, b), F.gelu(F.linear(x, w, b)))
    with pytest.raises(ValueError, match="epilogue=True needs a CUDA device"):
        PackedBackend(tiny_reranker.runtime.backend.model, device=torch.device("cpu"), dtype=torch.float32,
                      epilogue=True)


def test_post_attention_uses_the_fused_up_projection_where_given() -> None:
    gen = torch.Generator().manual_seed(3)
    hidden, inner = 16, 64
    ctx, x = torch.randn(5, hidden, generator=gen), torch.randn(5, hidden, generator=gen)
    weights = [torch.randn(hidden, hidden, generator=gen), torch.randn(hidden, generator=gen), torch.ones(hidden),
               torch.zeros(hidden), 1e-5, torch.randn(inner, hidden, generator=gen), torch.randn(inner, generator=gen),
               torch.randn(hidden, inner, generator=gen), torch.randn(hidden, generator=gen), torch.ones(hidden),
               torch.zeros(hidden), 1e-5]
    calls = []

    def up(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(h.shape)
        return F.gelu(F.linear(h, w, b))

    want = packed_layers._post_attention(ctx, x, *weights, F.gelu)  # type: ignore[arg-type]
    got = packed_layers._post_attention(ctx, x, *weights, F.relu, up=up)  # type: ignore[arg-type]
    assert calls == [torch.Size([5, hidden])]
    torch.testing.assert_close(got, want)


def _bare_backend(device: str = "cuda", dtype: torch.dtype = torch.float16) -> PackedBackend:
    """A backend without a model, enough for its attention choice (no GPU needed: the GPU queries are patched)."""
    backend = PackedBackend.__new__(PackedBackend)
    backend.device, backend.dtype, backend.head_dim, backend.scale = torch.device(device), dtype, 64, 0.125
    return backend


@pytest.mark.parametrize(("capability", "triton_ok", "expected"), [
    ((7, 5), True, "sdpa"),      # T4: no FlashAttention-2 kernels, the exact per-sequence path
    ((8, 0), True, "triton"),
    ((9, 0), False, "varlen"),   # no Triton: PyTorch's varlen_attn
])
def test_attention_choice_follows_the_gpu(monkeypatch, capability, triton_ok, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(packed_backend, "_varlen_attention", lambda: (lambda *a: None))
    monkeypatch.setattr(fused, "available", lambda device, dtype: triton_ok)
    assert _bare_backend()._choose_attention("auto") == expected
    assert _bare_backend(dtype=torch.float32)._choose_attention("auto") == "sdpa"


def test_a_failing_triton_attention_kernel_falls_back_to_varlen_once(monkeypatch, caplog):
    calls = []

    def broken(*args, **kwargs):
        calls.append("triton")
        raise RuntimeError("out of resources: shared memory")

    def varlen(q, *args):
        calls.append("varlen")
        return q

    monkeypatch.setattr(fused, "varlen_attention_items", broken)
    monkeypatch.setattr(packed_backend, "_varlen_attention", lambda: varlen)
    backend = _bare_backend()
    backend.attention_kind, backend.graphs = "triton", True
    q = torch.zeros(5, 2, 64)
    cu = torch.tensor([0, 3, 5], dtype=torch.int32)
    items = torch.tensor([0, 65536])
    for _ in range(2):
        assert backend._attend(q, q, q, cu, cu, 3, items=items) is q
    assert calls == ["triton", "varlen", "varlen"] and backend.attention_kind == "varlen"
    assert backend.graphs is False  # graphs need the Triton kernel
    assert "Triton attention kernel failed" in caplog.text

    backend.attention_kind = "triton"
    monkeypatch.setattr(fused, "varlen_attention_items",
                        lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory")))
    with pytest.raises(torch.OutOfMemoryError):
        backend._attend(q, q, q, cu, cu, 3, items=items)


@pytest.mark.parametrize(("tokens", "sequences"), [(1, 1), (1024, 16), (1025, 17), (30_000, 150), (32_768, 4000)])
def test_graph_bucket_holds_the_batch_and_its_attention_work(tokens: int, sequences: int) -> None:
    padded_tokens, padded_sequences, items = packed_graphs.graph_bucket(tokens, sequences, 64)
    assert padded_tokens % packed_graphs.GRAPH_TOKEN_STEP == 0 and tokens <= padded_tokens < tokens + 1024
    assert padded_sequences >= max(sequences, 16) and padded_sequences & (padded_sequences - 1) == 0
    assert padded_sequences < 2 * max(sequences, 16)
    assert items >= tokens // 64 + sequences  # attention_items' bound for any split of the tokens


def test_graph_inputs_are_padded_with_empty_sequences_and_no_work(tiny_reranker: Reranker) -> None:
    backend = PackedBackend(tiny_reranker.runtime.backend.model, device=torch.device("cpu"), dtype=torch.float32)
    assert backend.graphs is False  # CPU: no CUDA graphs
    with pytest.raises(ValueError, match="graphs=True needs"):
        PackedBackend(tiny_reranker.runtime.backend.model, device=torch.device("cpu"), dtype=torch.float32, graphs=True)
    encoded = tiny_reranker.encode(_pairs(5, seed=3))
    lengths = [len(e) for e in encoded]
    exact = backend._inputs(encoded)
    assert (exact.tokens, exact.sequences, exact.items) == (sum(lengths), 5, 0)  # CPU attention needs no work list
    padded = backend._inputs(encoded, graph=True)
    tokens, sequences, items = packed_graphs.graph_bucket(sum(lengths), 5, 64)
    assert (padded.tokens, padded.sequences, padded.items) == (tokens, sequences, items)
    flat, total = padded.host, sum(lengths)
    assert flat.numel() == 3 * tokens + sequences + 1 + items
    ids, positions, types = flat[: 3 * tokens].view(3, tokens)
    assert ids[:total].tolist() == [t for e in encoded for t in e.input_ids] and not ids[total:].any()
    assert positions[:total].tolist() == exact.host[total : 2 * total].tolist()
    assert (positions[total:] == backend.position_offset).all() and not types.any()
    cu = flat[3 * tokens : 3 * tokens + sequences + 1].tolist()
    assert cu[:6] == [0, *itertools.accumulate(lengths)] and set(cu[6:]) == {total}  # padding sequences are empty
    assert padded.cu_host.tolist() == cu[:6] and padded.max_len == max(lengths)
    work = flat[3 * tokens + sequences + 1 :].tolist()
    real = [w for w in work if w >= 0]
    assert real == [s * 65536 + b for s, n in enumerate(lengths) for b in range(-(-n // 64))]
    assert work[len(real):] == [-1] * (items - len(real))
