"""Reranker behaviour, and parity with the reference (FlagEmbedding's FlagReranker) on the same weights."""

import itertools
import math

import pytest
from FlagEmbedding import FlagReranker

from crossrank import Reranker, ScoreError
from crossrank.runtime.device import DeviceRuntime
from crossrank.testing import generated_sentences

TEXTS = [
    "北京是中国的政治中心。",
    "上海是中国最大的城市。",
    "Low vitamin D levels are linked to fatigue, bone pain, muscle weakness and low mood.",
    "",
    "🙂🚀 emoji-only passage 🔥✅",
    "the model search query passage document " * 150,  # far beyond max_length
    "试用期内离职无需支付违约金，但须结清借款与物品。" * 40,
    "   ",
    "pd.read_excel(file, skiprows=2) 是跳过前两行的标准写法。",
]
QUERIES = ["中国的首都是哪里？", "Symptoms of vitamin D deficiency", "", "emoji 🙂", "long query " * 300]
PAIRS = [(q, p) for q in QUERIES for p in TEXTS]


def reference(model_dir, pairs, **kwargs):
    return FlagReranker(str(model_dir), use_fp16=False, devices="cpu", **kwargs).compute_score(pairs)


def assert_close(ours, ref, tol=1e-5):
    assert len(ours) == len(ref)
    worst = max(abs(a - b) for a, b in zip(ours, ref))
    assert worst < tol, f"max abs difference {worst}"


def same_order(ours, ref, tol=2e-5):
    """Every pair the reference separates by more than rounding noise is ordered the same way by crossrank."""
    return all(ours[i] > ours[j] for i in range(len(ref)) for j in range(len(ref)) if ref[i] - ref[j] > tol)


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "mid_model_dir"])
@pytest.mark.parametrize("backend", ["auto", "padded"])
def test_parity_with_flagreranker(request, fixture, backend):
    model_dir = request.getfixturevalue(fixture)
    ref = reference(model_dir, PAIRS)
    ours = Reranker(str(model_dir), device="cpu", backend=backend).compute_score(PAIRS)
    assert_close(ours, ref)
    assert same_order(ours, ref)
    assert len(set(round(x, 4) for x in ref)) > len(ref) // 2, "the test model must spread its scores"


@pytest.mark.parametrize("backend", ["auto", "padded"])
def test_parity_truncation_and_small_batches(mid_model_dir, backend):
    """Short max_length cuts most passages; a small token budget forces many batches of varied padding."""
    pairs = [(q, p) for q in QUERIES[:2] for p in [*TEXTS, *list(generated_sentences(30, seed=3))]]
    ref = reference(mid_model_dir, pairs, max_length=48)
    r = Reranker(str(mid_model_dir), device="cpu", max_length=48, max_batch_tokens=200, backend=backend)
    ours = r.compute_score(pairs)
    assert_close(ours, ref)
    assert same_order(ours, ref)
    normalized = r.compute_score(pairs, normalize=True)
    assert_close(normalized, [1 / (1 + math.exp(-x)) for x in ref])


def test_compute_score_accepts_a_single_pair(tiny_reranker, tiny_model_dir):
    ref = reference(tiny_model_dir, ["q", "p"])
    assert_close(tiny_reranker.compute_score(["q", "p"]), ref)


def test_rerank_is_sorted_and_consistent_with_score(tiny_reranker):
    query = "中国的首都是哪里？"
    results = tiny_reranker.rerank(query, TEXTS)
    assert sorted(r.index for r in results) == list(range(len(TEXTS)))
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    scores = tiny_reranker.score([(query, t) for t in TEXTS])
    for r in results:
        assert r.text == TEXTS[r.index]
        assert r.score == pytest.approx(scores[r.index], abs=1e-6)
        assert r.score == pytest.approx(1 / (1 + math.exp(-r.raw_score)))
        assert 0.0 <= r.score <= 1.0
    top = tiny_reranker.rerank(query, TEXTS, top_k=3)
    assert [r.index for r in top] == [r.index for r in results[:3]]


def test_scores_do_not_depend_on_batch_composition(mid_model_dir):
    pairs = [("q", t) for t in list(generated_sentences(40, seed=5))]
    big = Reranker(str(mid_model_dir), device="cpu", max_batch_tokens=100_000).score(pairs)
    small = Reranker(str(mid_model_dir), device="cpu", max_batch_tokens=64).score(pairs)
    alone = [Reranker(str(mid_model_dir), device="cpu").score([p])[0] for p in pairs[:5]]
    assert_close(big, small)
    assert_close(big[:5], alone)


def test_empty_and_bad_inputs(tiny_reranker):
    assert tiny_reranker.rerank("q", []) == []
    assert tiny_reranker.score([]) == []
    with pytest.raises(ValueError, match="query is empty"):
        tiny_reranker.rerank("   ", ["p"])
    with pytest.raises(TypeError, match="query is None"):
        tiny_reranker.rerank(None, ["p"])
    with pytest.raises(TypeError, match=r"passages\[1\]"):
        tiny_reranker.rerank("q", ["ok", 3])
    with pytest.raises(TypeError, match="single string"):
        tiny_reranker.rerank("q", "one passage")
    with pytest.raises(TypeError, match="passages is None"):
        tiny_reranker.rerank("q", None)
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        tiny_reranker.score([("q",)])
    with pytest.raises(ValueError, match="top_k"):
        tiny_reranker.rerank("q", ["p"], top_k=0)
    with pytest.raises(ValueError, match="long_passages"):
        tiny_reranker.rerank("q", ["p"], long_passages="drop")


def test_huge_passage_is_truncated_not_refused(tiny_reranker):
    huge = "word " * 2_000_000  # 10 MB
    results = tiny_reranker.rerank("q", [huge, "short"])
    assert len(results) == 2


def test_chunking_scores_the_best_window(tiny_model_dir):
    r = Reranker(str(tiny_model_dir), device="cpu", max_length=32, long_passages="chunk", chunk_overlap=4)
    query = "vitamin D"
    short = "bone pain"
    long_text = " ".join(list(generated_sentences(12, seed=7)))
    results = {x.index: x for x in r.rerank(query, [short, long_text])}
    encoded = r.encode([(query, long_text)])
    assert len(encoded) > 1
    window_scores = [r.runtime.submit([e]).result()[0] for e in encoded]
    best = max(range(len(window_scores)), key=lambda i: window_scores[i])
    assert results[1].chunk == best
    assert results[1].raw_score == pytest.approx(window_scores[best], abs=1e-5)
    # a passage that fits scores the same either way (within fp32 rounding: it shares a batch with other windows here)
    truncating = Reranker(str(tiny_model_dir), device="cpu", max_length=32, chunk_overlap=4)
    assert results[0].raw_score == pytest.approx(truncating.rerank(query, [short])[0].raw_score, abs=1e-5)
    assert results[0].chunk == 0
    # per-call override
    assert truncating.rerank(query, [long_text], long_passages="chunk")[0].chunk == best


def test_max_length_above_model_limit_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="above this model's limit of 512"):
        Reranker(str(tiny_model_dir), device="cpu", max_length=1024)


def test_nan_scores_raise(tiny_reranker, monkeypatch):
    from fakes import FakeBackend

    monkeypatch.setattr(tiny_reranker, "runtime", DeviceRuntime(FakeBackend(fits=100, value=math.nan), 10_000))
    with pytest.raises(ScoreError):
        tiny_reranker.rerank("q", ["a", "b"])
    with pytest.raises(ScoreError):
        tiny_reranker.score([("q", "a")])


def test_library_prints_nothing(tiny_model_dir, capsys):
    r = Reranker(str(tiny_model_dir), device="cpu")
    r.rerank("q", [f"passage {i}" for i in range(300)])
    assert capsys.readouterr().out == ""


def test_slices_tokenised_ahead_give_the_same_scores(tiny_model_dir, monkeypatch):
    from crossrank.core import batching

    r = Reranker(str(tiny_model_dir), device="cpu", max_length=32, chunk_overlap=4)
    texts = [*TEXTS, *generated_sentences(20, seed=9)]
    whole = r.rerank("vitamin D", texts, long_passages="chunk")
    seen = []
    monkeypatch.setattr(batching, "ENCODE_SLICE", 4)
    sliced = r.rerank("vitamin D", texts, long_passages="chunk", progress=lambda *done_total: seen.append(done_total))
    # Per passage, not by position: "" and "   " encode alike, so their scores tie, and other batches can round the
    # tie either way (a 16-core host's BLAS did); same chunk and same score per passage is the claim.
    by_index = {x.index: x for x in whole}
    assert sorted(x.index for x in sliced) == sorted(by_index)
    assert [x.chunk for x in sliced] == [by_index[x.index].chunk for x in sliced]
    assert [x.raw_score for x in sliced] == pytest.approx([by_index[x.index].raw_score for x in sliced], abs=1e-5)
    assert [x.raw_score for x in sliced] == sorted((x.raw_score for x in sliced), reverse=True)
    assert seen[-1] == (len(texts), len(texts)) and all(b[0] >= a[0] for a, b in itertools.pairwise(seen))


def test_an_error_while_tokenising_a_later_slice_reaches_the_caller(tiny_model_dir, monkeypatch):
    from crossrank.core import batching

    r = Reranker(str(tiny_model_dir), device="cpu", max_length=32)
    monkeypatch.setattr(batching, "ENCODE_SLICE", 4)
    real = r.encoder.encode
    calls = []

    def encode(pairs):
        calls.append(len(pairs))
        if len(calls) == 3:
            raise RuntimeError("tokenizer broke")
        return real(pairs)

    monkeypatch.setattr(r.encoder, "encode", encode)
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        r.score([("q", f"passage {i}") for i in range(40)])
    monkeypatch.setattr(r.encoder, "encode", real)
    assert len(r.score([("q", f"passage {i}") for i in range(40)])) == 40  # nothing left behind


def test_an_unknown_long_passages_mode_is_a_clear_error(tiny_model_dir):
    with pytest.raises(ValueError, match="long_passages must be one of"):
        Reranker(str(tiny_model_dir), device="cpu", long_passages="split")
    r = Reranker(str(tiny_model_dir), device="cpu")
    for call in (lambda: r.score([("q", "p")], long_passages="split"), lambda: r.encode([("q", "p")], "split"),
                 lambda: r.rerank("q", ["p"], long_passages="split")):
        with pytest.raises(ValueError, match=r"long_passages must be one of \('truncate', 'chunk'\), not 'split'"):
            call()
    assert len(r.score([("q", "p")])) == 1
