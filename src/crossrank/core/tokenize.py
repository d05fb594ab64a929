"""Pair encoding identical to FlagReranker's, through the fast tokenizer's batch API, and long-passage chunking.

FlagReranker encodes a pair as: query ids cut to ``query_max_length``; passage ids cut to ``max_length``; both
joined with the model's special tokens and the passage cut again (``only_second``) so the pair fits ``max_length``.
We do the same with one batched tokenizer call for all queries and one for all passages, and join ids in Python.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN_LIMIT = 100
"""Texts are cut to ``max_length * 100`` characters before truncating tokenisation (see ``PairEncoder._ids``)."""


@dataclass(frozen=True)
class PairTemplate:
    """The special tokens a tokenizer puts around a pair: ``prefix q middle p suffix``, and their token type ids."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    first_type: int
    second_type: int

    @property
    def num_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


def _find(haystack: Sequence[int], needle: Sequence[int], start: int = 0) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if list(haystack[i : i + len(needle)]) == list(needle):
            return i
    raise ValueError("sub-sequence not found")


def pair_template(tokenizer: Any) -> PairTemplate:
    """Learn where the tokenizer puts its special tokens by encoding a known pair once."""
    probe_a, probe_b = "hello", "world"
    a = tokenizer(probe_a, add_special_tokens=False)["input_ids"]
    b = tokenizer(probe_b, add_special_tokens=False)["input_ids"]
    enc = tokenizer(probe_a, probe_b, add_special_tokens=True, return_token_type_ids=True)
    ids = enc["input_ids"]
    i = _find(ids, a)
    j = _find(ids, b, i + len(a))
    types = enc.get("token_type_ids") or [0] * len(ids)
    return PairTemplate(
        prefix=tuple(ids[:i]),
        middle=tuple(ids[i + len(a) : j]),
        suffix=tuple(ids[j + len(b) :]),
        first_type=int(types[i]),
        second_type=int(types[j]),
    )


def chunk_windows(n_tokens: int, room: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, end)`` windows of at most ``room`` tokens covering ``n_tokens``, neighbours sharing ``overlap``.

    >>> chunk_windows(10, 4, 1)
    [(0, 4), (3, 7), (6, 10)]

    Overlap is capped at half a window.
    """
    if n_tokens <= room:
        return [(0, n_tokens)]
    shared = min(overlap, room // 2)  # at most half a window is shared, so windows always advance
    return [(s, min(s + room, n_tokens)) for s in range(0, n_tokens - shared, room - shared)]


def rust_core(tokenizer: Any) -> Any | None:
    """The ``tokenizers.Tokenizer`` inside a fast Hugging Face tokenizer, or None.

    Calling it directly skips transformers' per-sequence Python conversion (a dict of lists per pair, and an
    element-by-element type check on decode), which cost about a third of tokenisation time; the Rust work and its
    settings are exactly those transformers' own call uses (see :meth:`PairEncoder._core_encode`).
    """
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - transformers' fast tokenizers always bring it
        return None
    core = getattr(tokenizer, "_tokenizer", None)
    return core if getattr(tokenizer, "is_fast", False) and isinstance(core, Tokenizer) else None


@dataclass(frozen=True)
class EncodedPair:
    """One sequence for the model: ``pair`` is the input pair's index, ``chunk`` the passage window it holds."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    pair: int
    chunk: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


class PairEncoder:
    """Encode (query, passage) pairs exactly as FlagReranker does; optionally split long passages into windows."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_length: int,
        query_max_length: int | None = None,
        model_max_length: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.template = pair_template(tokenizer)
        limit = model_max_length
        if limit is not None and max_length > limit:
            raise ValueError(f"max_length={max_length} is above this model's limit of {limit} tokens")
        if max_length < self.template.num_special + 2:
            raise ValueError(f"max_length={max_length} is too small to hold a query and a passage")
        self.max_length = max_length
        room = max_length - self.template.num_special - 1
        # FlagReranker's default is 3/4 of max_length; at tiny max_length that leaves no room for the passage.
        self.query_max_length = query_max_length if query_max_length is not None else min(max_length * 3 // 4, room)
        if not 0 < self.query_max_length <= room:
            raise ValueError(
                f"query_max_length={self.query_max_length} must leave room for a passage within max_length={max_length}"
            )
        self.uses_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        # FlagReranker joins ids with `prepare_for_model` where the tokenizer has it (transformers 4). Transformers 5
        # removed it, and FlagReranker then decodes both id lists and tokenises the pair text again, which differs
        # from joining ids when text does not survive the round trip (unknown characters, an empty passage). We
        # follow whichever the reference does with this tokenizer, so scores stay identical to it.
        self.join_by_text = not callable(getattr(tokenizer, "prepare_for_model", None))
        self.core: Any = rust_core(tokenizer)  # None: use the tokenizer's own __call__ and batch_decode
        # Truncation is state on the shared Rust tokenizer (transformers sets it before every call too): set it and
        # encode under one lock so two threads of this encoder never see each other's settings.
        self._core_lock = threading.Lock()
        # Skip the reference's second tokenisation where it provably gives the joined ids (_join_by_text_core).
        self.fast_join = True

    @property
    def truncate_left(self) -> bool:
        """Read from the tokenizer at each use, as transformers does (a caller may change ``truncation_side``)."""
        return getattr(self.tokenizer, "truncation_side", "right") == "left"

    def _core_encode(self, inputs: list[Any], *, max_length: int | None, strategy: str,
                     add_special_tokens: bool, offsets: bool = False) -> list[Any]:
        """What transformers' ``tokenizer(...)`` does for these options, minus its Python conversion per sequence:
        truncation (or none), no padding, the tokenizer's ``split_special_tokens``, one ``encode_batch``."""
        core = self.core
        with self._core_lock:
            if max_length is None:
                core.no_truncation()
            else:
                core.enable_truncation(max_length, stride=0, strategy=strategy,
                                       direction=getattr(self.tokenizer, "truncation_side", "right"))
            core.no_padding()
            core.encode_special_tokens = bool(getattr(self.tokenizer, "split_special_tokens", False))
            # Same ids and type ids; `encode_batch_fast` (tokenizers >= 0.21) skips the character offsets nobody here
            # reads: 0.11 against 0.14 s for 4,000 passages on 16 cores, 0.70 against 1.14 s on one.
            encode = core.encode_batch if offsets else getattr(core, "encode_batch_fast", core.encode_batch)
            return list(encode(inputs, add_special_tokens=add_special_tokens))

    @staticmethod
    def _cut(texts: Sequence[str], max_length: int | None) -> list[str]:
        """The tokenizer reads a whole text before truncating it: a 10 MB passage would take seconds to yield 512
        tokens. Texts are cut first, far beyond what ``max_length`` tokens can span in ordinary text."""
        if max_length is None:
            return list(texts)
        limit = max_length * CHARS_PER_TOKEN_LIMIT
        return [t[:limit] for t in texts]

    def cut_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Each query and passage cut (as :meth:`encode` cuts them, idempotently) to no more than truncating
        tokenisation can read, so that a 10 MB passage costs no more to send elsewhere to tokenise than to tokenise."""
        queries = self._cut([q for q, _ in pairs], self.query_max_length)
        passages = self._cut([p for _, p in pairs], self.max_length)
        return list(zip(queries, passages, strict=True))

    def _ids(self, texts: Sequence[str], max_length: int | None) -> list[list[int]]:
        if not texts:
            return []
        kwargs: dict[str, Any] = {"add_special_tokens": False, "return_attention_mask": False}
        if max_length is not None:
            kwargs.update(truncation=True, max_length=max_length)
            texts = self._cut(texts, max_length)
        if self.core is not None:
            found = self._core_encode(list(texts), max_length=max_length, strategy="longest_first",
                                      add_special_tokens=False)
            return [e.ids for e in found]
        return list(self.tokenizer(list(texts), **kwargs)["input_ids"])

    def encode_queries(self, queries: Sequence[str]) -> list[list[int]]:
        """Token ids of each query, cut to ``query_max_length`` (duplicates are tokenised once)."""
        unique = list(dict.fromkeys(queries))
        ids = dict(zip(unique, self._ids(unique, self.query_max_length)))
        return [ids[q] for q in queries]

    def _join_ids(self, q: list[int], p: list[int], pair: int, chunk: int) -> EncodedPair:
        """`prepare_for_model(q, p, truncation="only_second")` without the per-pair Python call."""
        t = self.template
        room = self.max_length - len(q) - t.num_special
        if len(p) > room:
            p = p[len(p) - room :] if self.truncate_left else p[:room]
        first = len(t.prefix) + len(q) + len(t.middle)
        ids = [*t.prefix, *q, *t.middle, *p, *t.suffix]
        types = [t.first_type] * first + [t.second_type] * (len(ids) - first) if self.uses_token_types else None
        return EncodedPair(ids, types, pair, chunk)

    def _join_by_text(self, items: Sequence[tuple[list[int], list[int], int, int]]) -> list[EncodedPair]:
        """FlagReranker's transformers-5 path: decode both id lists, tokenise the pair text again (batched here)."""
        tok = self.tokenizer
        decode: dict[str, Any] = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
        q_text = tok.batch_decode([it[0] for it in items], **decode)
        p_text = tok.batch_decode([it[1] for it in items], **decode)
        common: dict[str, Any] = {
            "add_special_tokens": True, "return_attention_mask": False, "return_token_type_ids": self.uses_token_types
        }
        out: list[EncodedPair | None] = [None] * len(items)
        # An empty passage text makes the reference's call `tokenizer(q, "")`, which encodes the query alone.
        with_p = [i for i, p in enumerate(p_text) if p]
        without_p = [i for i, p in enumerate(p_text) if not p]
        for idx, enc in (
            (with_p, tok([q_text[i] for i in with_p], [p_text[i] for i in with_p], truncation="only_second",
                         max_length=self.max_length, **common) if with_p else None),
            (without_p, tok([q_text[i] for i in without_p], **common) if without_p else None),
        ):
            if enc is None:
                continue
            types = enc.get("token_type_ids")
            for k, i in enumerate(idx):
                out[i] = EncodedPair(list(enc["input_ids"][k]), list(types[k]) if types is not None else None,
                                     items[i][2], items[i][3])
        return [e for e in out if e is not None]

    def _join_by_text_core(self, items: Sequence[tuple[list[int], list[int], int, int]],
                           sources: Sequence[tuple[str, str]] | None = None) -> list[EncodedPair]:
        """:meth:`_join_by_text` through the Rust tokenizer directly (same decode, same pair encoding).

        ``sources``: the (query, passage) texts the id lists were encoded from, untruncated. Where both decode back
        to exactly those texts, tokenising the decoded pair again would encode the same strings with the same
        tokenizer, and a pair is encoded as its two sequences separately: the result is the two id lists joined by
        the template with ``only_second`` truncation, i.e. :meth:`_join_ids`. Those pairs skip the second
        tokenisation (about half of the work); any other pair (truncated, unknown characters, whitespace the
        normaliser changes, an empty passage) is tokenised again as the reference does.
        """
        core = self.core
        # Pairs of one query share its id list (encode_queries hands out one list per distinct query): decode it once.
        distinct = {id(it[0]): it[0] for it in items}
        decoded = dict(zip(distinct, core.decode_batch(list(distinct.values()), skip_special_tokens=False)))
        q_text = [decoded[id(it[0])] for it in items]
        p_text = core.decode_batch([it[1] for it in items], skip_special_tokens=False)
        out: list[EncodedPair | None] = [None] * len(items)
        if sources is not None:
            for i, (item, (q_src, p_src)) in enumerate(zip(items, sources, strict=True)):
                q_ids, p_ids = item[0], item[1]
                untruncated = len(q_ids) < self.query_max_length and len(p_ids) < self.max_length
                if untruncated and p_text[i] and p_text[i] == p_src and q_text[i] == q_src:
                    out[i] = self._join_ids(*item)
        todo = [i for i, e in enumerate(out) if e is None]
        with_p = [i for i in todo if p_text[i]]
        without_p = [i for i in todo if not p_text[i]]
        groups = (
            (with_p, [(q_text[i], p_text[i]) for i in with_p], self.max_length),
            (without_p, [q_text[i] for i in without_p], None),  # `tokenizer(q, "")` encodes the query alone
        )
        for idx, inputs, max_length in groups:
            if not idx:
                continue
            found = self._core_encode(inputs, max_length=max_length, strategy="only_second", add_special_tokens=True)
            for i, e in zip(idx, found):
                out[i] = EncodedPair(e.ids, e.type_ids if self.uses_token_types else None, items[i][2], items[i][3])
        return [e for e in out if e is not None]

    def _join(self, items: Sequence[tuple[list[int], list[int], int, int]],
              sources: Sequence[tuple[str, str]] | None = None) -> list[EncodedPair]:
        if self.join_by_text:
            if self.core is not None:
                return self._join_by_text_core(items, sources)
            return self._join_by_text(items)
        return [self._join_ids(*item) for item in items]

    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[EncodedPair]:
        """One sequence per pair, the passage truncated to fit (FlagReranker's behaviour)."""
        # Cut here rather than in _ids (where cutting again changes nothing), so that the round-trip check of
        # _join_by_text_core compares with the texts exactly as they were tokenised.
        cut = self.cut_pairs(pairs)
        queries, passages = [q for q, _ in cut], [p for _, p in cut]
        q_ids = self.encode_queries(queries)
        p_ids = self._ids(passages, self.max_length)
        items = [(q, p, i, 0) for i, (q, p) in enumerate(zip(q_ids, p_ids))]
        return self._join(items, list(zip(queries, passages)) if self.fast_join else None)

    def encode_as(self, pairs: Sequence[tuple[str, str]], long_passages: str, chunk_overlap: int) -> list[EncodedPair]:
        """:meth:`encode` for ``long_passages="truncate"``, :meth:`encode_chunked` (windows ``chunk_overlap`` tokens
        apart) for ``"chunk"``: what the Reranker and its tokenizer processes run on each slice of pairs."""
        if long_passages == "chunk":
            return self.encode_chunked(pairs, overlap=chunk_overlap)
        return self.encode(pairs)

    def encode_chunked(
        self, pairs: Sequence[tuple[str, str]], overlap: int, max_chunks: int | None = None
    ) -> list[EncodedPair]:
        """Split each passage into windows that fit beside its query, ``overlap`` tokens shared by neighbours.

        The first window is exactly what truncation keeps, so a passage that fits gives the same score either way.
        """
        q_ids = self.encode_queries([q for q, _ in pairs])
        p_ids = self._ids([p for _, p in pairs], None)
        items: list[tuple[list[int], list[int], int, int]] = []
        for i, (q, p) in enumerate(zip(q_ids, p_ids)):
            room = self.max_length - len(q) - self.template.num_special
            windows = chunk_windows(len(p), room, overlap)[:max_chunks]
            for c, (start, end) in enumerate(windows):
                # The first window goes through the same path as truncation, so it encodes identically.
                items.append((q, p[: self.max_length] if c == 0 else p[start:end], i, c))
        return self._join(items)


@dataclass(frozen=True)
class ReadSpan:
    """The part of a passage the model read: characters ``[start, end)`` holding ``tokens`` passage tokens, from
    window ``window`` (0-based) of the ``windows`` a chunked passage was split into (1 when passages are truncated)."""

    start: int
    end: int
    tokens: int
    window: int = 0
    windows: int = 1


def _token_window(n: int, room: int, encoder: PairEncoder, chunked: bool, window: int,
                  overlap: int) -> tuple[int, int, int]:
    """``[start, end)`` in tokens of what the encoder keeps of an ``n``-token passage, and the number of windows."""
    left = encoder.truncate_left
    if not chunked:
        return (max(0, n - room), n, 1) if left else (0, min(n, room), 1)
    windows = chunk_windows(n, room, overlap)
    if window >= len(windows):
        raise ValueError(f"window {window} does not exist: the passage has {len(windows)}")
    if window == 0 and left:  # the first window is truncation's head, cut from the left beside the query
        end = min(n, encoder.max_length)
        return max(0, end - room), end, len(windows)
    start, end = windows[window]
    return start, end, len(windows)


def read_spans(encoder: PairEncoder, query: str, passages: Sequence[str], windows: Sequence[int], *,
               long_passages: str, overlap: int) -> list[ReadSpan] | None:
    """Which characters of each passage the model read beside ``query``, as :meth:`PairEncoder.encode_as` cuts them:
    the head that truncation keeps, or with ``long_passages="chunk"`` the window ``windows[i]`` (the one that scored
    best). None where the tokenizer gives no character offsets (a slow tokenizer). Meant for display, off the
    scoring path: it tokenises the passages again."""
    if encoder.core is None:
        return None
    chunked = long_passages == "chunk"
    q_ids = encoder.encode_queries([query])[0]
    room = encoder.max_length - len(q_ids) - encoder.template.num_special
    texts = list(passages) if chunked else [p for _, p in encoder.cut_pairs([(query, p) for p in passages])]
    found = encoder._core_encode(texts, max_length=None, strategy="longest_first", add_special_tokens=False,
                                 offsets=True)
    spans = []
    for text, enc, window in zip(texts, found, windows, strict=True):
        offsets = enc.offsets
        start, end, count = _token_window(len(offsets), room, encoder, chunked, window, overlap)
        first = 0 if start == 0 else offsets[start][0]
        last = len(text) if end == len(offsets) else offsets[end - 1][1]
        spans.append(ReadSpan(first, last, end - start, window, count))
    return spans
