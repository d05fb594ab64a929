import itertools

import pytest
from FlagEmbedding.utils.tokenizer_compat import prepare_for_model_compat
from hypothesis import given
from hypothesis import strategies as st

from crossrank.core.tokenize import PairEncoder, chunk_windows, pair_template, read_spans

PAIRS = [
    ("中国的首都是哪里？", "北京是中国的政治中心。"),
    ("Symptoms of vitamin D deficiency", "Low vitamin D levels are linked to fatigue. " * 60),
    ("", "empty query"),
    ("empty passage", ""),
    ("emoji 🙂🚀", "🔥 passage ✅ with emoji 🌏"),
    ("a long query " * 200, "short passage"),
    ("  spaced   query ", "  lead and trail  "),
]


def reference_ids(tokenizer, query, passage, max_length, query_max_length):
    """FlagReranker's own encoding (FlagEmbedding/inference/reranker/encoder_only/base.py)."""
    q = tokenizer([query], add_special_tokens=False, max_length=query_max_length, truncation=True)["input_ids"][0]
    p = tokenizer([passage], add_special_tokens=False, max_length=max_length, truncation=True)["input_ids"][0]
    return prepare_for_model_compat(tokenizer, q, p, truncation="only_second", max_length=max_length)["input_ids"]


def test_template_of_xlmr(tokenizer_for_tests):
    t = pair_template(tokenizer_for_tests)
    assert t.prefix == (0,) and t.middle == (2, 2) and t.suffix == (2,)
    assert t.num_special == 4


@pytest.mark.parametrize("max_length", [24, 64, 512])
def test_ids_equal_flagreranker(tokenizer_for_tests, max_length):
    enc = PairEncoder(tokenizer_for_tests, max_length=max_length)
    ours = enc.encode(PAIRS)
    for (q, p), e in zip(PAIRS, ours):
        expected = reference_ids(tokenizer_for_tests, q, p, max_length, max_length * 3 // 4)
        assert e.input_ids == expected, (q[:20], p[:20])
        assert len(e) <= max_length
    assert [e.pair for e in ours] == list(range(len(PAIRS)))


def test_cut_pairs_are_short_idempotent_and_encode_the_same(tokenizer_for_tests):
    enc = PairEncoder(tokenizer_for_tests, max_length=64)
    long_pairs = [*PAIRS, ("q " * 50_000, "word " * 200_000)]  # a 1 MB passage
    cut = enc.cut_pairs(long_pairs)
    assert len(cut[-1][1]) <= 64 * 100 and len(cut[-1][0]) <= enc.query_max_length * 100
    assert cut[:-1] == PAIRS  # ordinary texts are not touched
    assert enc.cut_pairs(cut) == cut
    assert enc.encode(cut) == enc.encode(long_pairs)


def test_limits_are_checked(tokenizer_for_tests):
    with pytest.raises(ValueError, match="above this model's limit"):
        PairEncoder(tokenizer_for_tests, max_length=9000, model_max_length=8192)
    with pytest.raises(ValueError, match="query_max_length"):
        PairEncoder(tokenizer_for_tests, max_length=64, query_max_length=64)
    with pytest.raises(ValueError, match="too small"):
        PairEncoder(tokenizer_for_tests, max_length=4)


@given(n=st.integers(0, 3000), room=st.integers(1, 600), overlap=st.integers(0, 700))
def test_chunk_windows_cover_everything_with_the_overlap(n, room, overlap):
    windows = chunk_windows(n, room, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == n
    for (s0, e0), (s1, e1) in itertools.pairwise(windows):
        assert e1 - s1 <= room and e0 - s0 <= room
        assert s0 < s1 <= e0, "no gap, and progress"
        assert e0 - s1 == min(overlap, room // 2), "neighbours share the overlap, at most half a window"
    assert all(e > s for s, e in windows) or n == 0


def test_chunks_fit_and_first_equals_truncation(tokenizer_for_tests):
    enc = PairEncoder(tokenizer_for_tests, max_length=32)
    query, passage = "vitamin D", " ".join(f"word{i}" for i in range(120))
    chunks = enc.encode_chunked([(query, passage)], overlap=4)
    assert len(chunks) > 3
    assert chunks[0].input_ids == enc.encode([(query, passage)])[0].input_ids
    assert [c.chunk for c in chunks] == list(range(len(chunks)))
    assert all(len(c) <= 32 and c.pair == 0 for c in chunks)
    assert len(enc.encode_chunked([(query, passage)], overlap=4, max_chunks=2)) == 2


def test_short_passage_is_one_chunk(tokenizer_for_tests):
    enc = PairEncoder(tokenizer_for_tests, max_length=64)
    pairs = [("q", "short"), ("q", "")]
    assert [c.input_ids for c in enc.encode_chunked(pairs, overlap=8)] == [e.input_ids for e in enc.encode(pairs)]


def _through_transformers(enc: PairEncoder) -> PairEncoder:
    enc.core = None  # the path through the Hugging Face tokenizer's own __call__ and batch_decode
    return enc


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("max_length", [24, 512])
def test_rust_core_path_equals_transformers_path(tokenizer_for_tests, side, max_length):
    fast = PairEncoder(tokenizer_for_tests, max_length=max_length)
    assert fast.core is not None
    slow = _through_transformers(PairEncoder(tokenizer_for_tests, max_length=max_length))
    old_side = tokenizer_for_tests.truncation_side
    tokenizer_for_tests.truncation_side = side
    try:
        pairs = [*PAIRS, ("q \u0000 \ufffd ", "unknown \U0001d11e chars \u200b"), ("x", " "), ("", "")]
        assert fast.encode(pairs) == slow.encode(pairs)
        assert fast.encode_chunked(pairs, overlap=4) == slow.encode_chunked(pairs, overlap=4)
    finally:
        tokenizer_for_tests.truncation_side = old_side


@given(st.lists(st.tuples(st.text(max_size=80), st.text(max_size=300)), min_size=1, max_size=6))
def test_rust_core_path_equals_transformers_path_on_any_text(tokenizer_for_tests, pairs):
    fast = PairEncoder(tokenizer_for_tests, max_length=48)
    slow = _through_transformers(PairEncoder(tokenizer_for_tests, max_length=48))
    assert fast.encode(pairs) == slow.encode(pairs)


_WORDS = ["vitamin", "D", "中国", "北京", "</s>", "<unk>", "🙂", "\u200b", "\U0001d11e", "a", "Ünïcödé", "x" * 30]


def _texts(most_words: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(_WORDS), max_size=most_words).flatmap(
        lambda words: st.lists(st.sampled_from([" ", "  ", "\n", "\t", ""]), min_size=len(words),
                               max_size=len(words)).map(lambda gaps: "".join(w + g for w, g in zip(words, gaps))))


# Short queries, so that most examples leave room for a passage after the reference tokenises the query again (a
# decoded query can come back longer, and then the reference itself fails; the test then expects the same failure).
@given(st.lists(st.tuples(_texts(3), _texts(40)), min_size=1, max_size=6), st.sampled_from([32, 48, 512]))
def test_skipping_the_second_tokenisation_changes_nothing(tokenizer_for_tests, pairs, max_length):
    """The round-trip shortcut of _join_by_text_core gives exactly what tokenising the decoded pair again gives,
    on text with special tokens, unknown characters, runs of whitespace, truncation and empty sides."""
    fast = PairEncoder(tokenizer_for_tests, max_length=max_length)
    slow = PairEncoder(tokenizer_for_tests, max_length=max_length)
    slow.fast_join = False
    assert fast.join_by_text and fast.core is not None
    try:
        expected = slow.encode(pairs)
    except Exception as exc:  # a query that comes back longer than the room left for it fails in the reference too
        with pytest.raises(type(exc)):
            fast.encode(pairs)
        return
    assert fast.encode(pairs) == expected


def test_clean_text_skips_the_second_tokenisation(tokenizer_for_tests, monkeypatch):
    enc = PairEncoder(tokenizer_for_tests, max_length=64)
    calls = []
    original = enc._core_encode

    def counting(inputs, **kwargs):
        calls.append((len(inputs), kwargs["strategy"]))
        return original(inputs, **kwargs)

    monkeypatch.setattr(enc, "_core_encode", counting)
    pairs = [("vitamin D", "low vitamin D levels"), ("vitamin D", "a b c"), ("vitamin D", "x " * 200)]
    got = enc.encode(pairs)
    # Queries and passages once each; only the truncated passage is tokenised again as a pair.
    assert calls == [(1, "longest_first"), (3, "longest_first"), (1, "only_second")]
    assert got == [*PairEncoder(tokenizer_for_tests, max_length=64).encode(pairs)]
    assert [e.input_ids for e in got] == [reference_ids(tokenizer_for_tests, q, p, 64, 48) for q, p in pairs]


def _read_exactly(tokenizer, text: str, span, kept: list[int]) -> bool:
    """Whether ``kept`` is a run of the tokens of ``text`` that starts at character ``span.start`` and ends at
    ``span.end`` (or at the text's ends). Runs are compared by ids: two tokens may share one character's offsets."""
    found = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = found["input_ids"], found["offset_mapping"]
    for k in range(len(ids) - len(kept) + 1):
        if ids[k : k + len(kept)] != kept:
            continue
        starts = span.start == (0 if k == 0 else offsets[k][0])
        ends = span.end == (len(text) if k + len(kept) == len(ids) else offsets[k + len(kept) - 1][1])
        if starts and ends:
            return True
    return False


def _passage_ids(enc: PairEncoder, encoded, query: str) -> list[int]:
    """The passage part of an encoded pair: between the query's middle tokens and the suffix."""
    start = len(enc.template.prefix) + len(enc.encode_queries([query])[0]) + len(enc.template.middle)
    return encoded.input_ids[start : len(encoded.input_ids) - len(enc.template.suffix)]


READ_PASSAGES = ["Low vitamin D levels are linked to fatigue. " * 60, "short one", "", "北京是中国的政治中心。" * 50]


@pytest.mark.parametrize("side", ["right", "left"])
def test_read_spans_name_the_characters_truncation_keeps(tokenizer_for_tests, side, monkeypatch):
    monkeypatch.setattr(tokenizer_for_tests, "truncation_side", side)
    enc = PairEncoder(tokenizer_for_tests, max_length=64)
    query = "vitamin D"
    spans = read_spans(enc, query, READ_PASSAGES, [0] * 4, long_passages="truncate", overlap=8)
    assert spans is not None
    for passage, span, encoded in zip(READ_PASSAGES, spans, enc.encode([(query, p) for p in READ_PASSAGES])):
        kept = _passage_ids(enc, encoded, query)
        assert span.tokens == len(kept) and (span.window, span.windows) == (0, 1)
        assert _read_exactly(tokenizer_for_tests, passage, span, kept)
    long_span, short_span, empty_span = spans[0], spans[1], spans[2]
    assert (short_span.start, short_span.end) == (0, len("short one"))
    assert (empty_span.start, empty_span.end, empty_span.tokens) == (0, 0, 0)
    if side == "right":
        assert long_span.start == 0 and 0 < long_span.end < len(READ_PASSAGES[0])
    else:
        assert long_span.start > 0 and long_span.end == len(READ_PASSAGES[0])


def test_read_spans_name_the_winning_window(tokenizer_for_tests):
    enc = PairEncoder(tokenizer_for_tests, max_length=64)
    query, passage = "vitamin D", READ_PASSAGES[0]
    chunks = enc.encode_chunked([(query, passage)], overlap=8)
    spans = read_spans(enc, query, [passage] * len(chunks), [c.chunk for c in chunks], long_passages="chunk",
                       overlap=8)
    assert spans is not None and len(chunks) > 3
    # Windows after the first are joined by text (decoded, tokenised again), so compare with the passage's own ids.
    ids = tokenizer_for_tests(passage, add_special_tokens=False)["input_ids"]
    room = enc.max_length - len(enc.encode_queries([query])[0]) - enc.template.num_special
    for chunk, span, (start, end) in zip(chunks, spans, chunk_windows(len(ids), room, 8), strict=True):
        kept = ids[start:end]
        assert (span.window, span.windows, span.tokens) == (chunk.chunk, len(chunks), len(kept))
        assert _read_exactly(tokenizer_for_tests, passage, span, kept)
    assert [s.start for s in spans] == sorted(s.start for s in spans) and spans[0].start == 0
    assert spans[1].start < spans[0].end   # neighbours share their overlap
    assert spans[-1].end == len(passage)
    with pytest.raises(ValueError, match="window"):
        read_spans(enc, query, [passage], [len(chunks)], long_passages="chunk", overlap=8)
