"""Pair encoding identical to FlagReranker's, through the fast tokenizer's batch API, and long-passage chunking.

FlagReranker encodes a pair as: query ids cut to ``query_max_length``; passage ids cut to ``max_length``; both
joined with the model's special tokens and the passage cut again (``only_second``) so the pair fits ``max_length``.
We do the same with one batched tokenizer call for all queries and one for all passages, and join ids in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PairTemplate:
    """The special tokens a tokenizer puts around a pair: ``prefix q middle p suffix``, and their token type ids."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    first_type: int
    second_type: int
    single_suffix: tuple[int, ...]

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
    single = tokenizer(probe_a, add_special_tokens=True)["input_ids"]
    return PairTemplate(
        prefix=tuple(ids[:i]),
        middle=tuple(ids[i + len(a) : j]),
        suffix=tuple(ids[j + len(b) :]),
        first_type=int(types[i]),
        second_type=int(types[j]),
        single_suffix=tuple(single[_find(single, a) + len(a) :]),
    )


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
        self.query_max_length = query_max_length if query_max_length is not None else max_length * 3 // 4
        if not 0 < self.query_max_length <= max_length - self.template.num_special - 1:
            raise ValueError(
                f"query_max_length={self.query_max_length} must leave room for a passage within max_length={max_length}"
            )
        self.uses_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        self.truncate_left = getattr(tokenizer, "truncation_side", "right") == "left"

    def _ids(self, texts: Sequence[str], max_length: int | None) -> list[list[int]]:
        if not texts:
            return []
        kwargs: dict[str, Any] = {"add_special_tokens": False, "return_attention_mask": False}
        if max_length is not None:
            kwargs.update(truncation=True, max_length=max_length)
        return list(self.tokenizer(list(texts), **kwargs)["input_ids"])

    def encode_queries(self, queries: Sequence[str]) -> list[list[int]]:
        """Token ids of each query, cut to ``query_max_length`` (duplicates are tokenised once)."""
        unique = list(dict.fromkeys(queries))
        ids = dict(zip(unique, self._ids(unique, self.query_max_length)))
        return [ids[q] for q in queries]

    def _join(self, q: list[int], p: list[int], pair: int, chunk: int) -> EncodedPair:
        t = self.template
        room = self.max_length - len(q) - t.num_special
        if len(p) > room:
            p = p[len(p) - room :] if self.truncate_left else p[:room]
        if not p:
            # FlagReranker (on transformers 5) re-tokenises the decoded pair, and an empty passage then becomes no
            # second sequence at all: `<s> q </s>`. Match it, since parity with the reference is the contract.
            ids = [*t.prefix, *q, *t.single_suffix]
            types = [t.first_type] * len(ids) if self.uses_token_types else None
            return EncodedPair(ids, types, pair, chunk)
        first = len(t.prefix) + len(q) + len(t.middle)
        ids = [*t.prefix, *q, *t.middle, *p, *t.suffix]
        types = [t.first_type] * first + [t.second_type] * (len(ids) - first) if self.uses_token_types else None
        return EncodedPair(ids, types, pair, chunk)

    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[EncodedPair]:
        """One sequence per pair, the passage truncated to fit (FlagReranker's behaviour)."""
        q_ids = self.encode_queries([q for q, _ in pairs])
        p_ids = self._ids([p for _, p in pairs], self.max_length)
        return [self._join(q, p, i, 0) for i, (q, p) in enumerate(zip(q_ids, p_ids))]

    def encode_chunked(
        self, pairs: Sequence[tuple[str, str]], overlap: int, max_chunks: int | None = None
    ) -> list[EncodedPair]:
        """Split each passage into windows that fit beside its query, ``overlap`` tokens shared by neighbours.

        The first window is exactly what truncation keeps, so a passage that fits gives the same score either way.
        """
        q_ids = self.encode_queries([q for q, _ in pairs])
        p_ids = self._ids([p for _, p in pairs], None)
        out: list[EncodedPair] = []
        for i, (q, p) in enumerate(zip(q_ids, p_ids)):
            room = self.max_length - len(q) - self.template.num_special
            stride = max(1, room - min(overlap, room - 1))
            starts = range(0, max(1, len(p) - overlap if len(p) > room else 1), stride)
            for c, start in enumerate(starts):
                if max_chunks is not None and c >= max_chunks:
                    break
                out.append(self._join(q, p[start : start + room], i, c))
        return out
