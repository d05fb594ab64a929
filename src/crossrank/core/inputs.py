"""Validation of what callers pass in: clear errors that name the culprit."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any


def find_lone_surrogate(text: str) -> int | None:
    """Index of the first lone UTF-16 surrogate in ``text`` (JSON's ``"\\ud800"`` decodes to one), else ``None``.

    Such a string is not valid Unicode text: it cannot be encoded as UTF-8, and tokenizers reject it."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_text(text: str, name: str) -> str:
    """Raise ``ValueError`` naming ``name`` when ``text`` holds a lone surrogate."""
    at = find_lone_surrogate(text)
    if at is not None:
        raise ValueError(f"{name} holds a lone surrogate (U+{ord(text[at]):04X} at character {at}), which is not "
                         "valid Unicode text: send well-formed UTF-8")
    return text


def check_query(query: Any) -> str:
    """The query as given; ``TypeError``/``ValueError`` for a non-string, blank or malformed one."""
    if query is None:
        raise TypeError("query is None: pass the question or search text as a string")
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, not {type(query).__name__}")
    if not query.strip():
        raise ValueError("query is empty: pass the question or search text to rank the passages against")
    return check_text(query, "query")


def check_top_k(top_k: Any) -> int | None:
    """``None`` keeps every result; otherwise at least 1."""
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}")
    return top_k


def check_passages(passages: Any) -> list[str]:
    """The passages as a list; ``TypeError``/``ValueError`` naming the first bad one."""
    if passages is None:
        raise TypeError("passages is None: pass a list of strings (an empty list gives an empty result)")
    if isinstance(passages, (str, bytes)):
        raise TypeError("passages must be a list of strings, not a single string: wrap it as [passage]")
    if not isinstance(passages, Sequence):
        raise TypeError(f"passages must be a list of strings, not {type(passages).__name__}")
    for i, p in enumerate(passages):
        if not isinstance(p, str):
            raise TypeError(f"passages[{i}] must be a string, not {type(p).__name__}")
        if not p.isascii():
            check_text(p, f"passages[{i}]")
    return list(passages)


def check_pairs(pairs: Any) -> list[tuple[str, str]]:
    """Accept ``[(q, p), ...]`` or a single ``(q, p)`` / ``[q, p]`` pair, like FlagReranker."""
    if pairs is None:
        raise TypeError("pairs is None: pass a list of (query, passage) pairs")
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(f"pairs must be a list of (query, passage) pairs, not {type(pairs).__name__}")
    if len(pairs) == 2 and all(isinstance(x, str) for x in pairs):
        pairs = [pairs]
    out: list[tuple[str, str]] = []
    for pair in pairs:  # the common case, plain tuples or lists of two str, checked fast (4,000 pairs: ~1 ms, not ~7)
        if (type(pair) is tuple or type(pair) is list) and len(pair) == 2:
            q, p = pair
            if type(q) is str and type(p) is str and q.isascii() and p.isascii():
                out.append((q, p))
                continue
        break
    else:
        return out
    for i, pair in enumerate(itertools.islice(pairs, len(out), None), start=len(out)):  # the rest, checked in full
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"pairs[{i}] must be a (query, passage) pair of two strings, not {pair!r:.80}")
        q, p = pair
        if not isinstance(q, str):
            raise TypeError(f"pairs[{i}][0] (the query) must be a string, not {type(q).__name__}")
        if not isinstance(p, str):
            raise TypeError(f"pairs[{i}][1] (the passage) must be a string, not {type(p).__name__}")
        out.append((check_text(q, f"pairs[{i}][0] (the query)"), check_text(p, f"pairs[{i}][1] (the passage)")))
    return out
