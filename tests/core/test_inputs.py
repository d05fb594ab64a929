"""Validation of caller input: clear TypeError/ValueError naming the culprit."""

from __future__ import annotations

import pytest

from crossrank.core.inputs import check_pairs, check_passages, check_query


def test_query_accepted_unchanged() -> None:
    assert check_query("  what is BM25?  ") == "  what is BM25?  "


def test_query_none() -> None:
    with pytest.raises(TypeError, match="query is None"):
        check_query(None)


@pytest.mark.parametrize(("value", "name"), [(3, "int"), (b"bytes", "bytes"), (["q"], "list")])
def test_query_wrong_type(value: object, name: str) -> None:
    with pytest.raises(TypeError, match=f"query must be a string, not {name}"):
        check_query(value)


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_query_empty(value: str) -> None:
    with pytest.raises(ValueError, match="query is empty"):
        check_query(value)


def test_passages_accepted_as_list() -> None:
    assert check_passages(("a", "", "🙂")) == ["a", "", "🙂"]
    assert check_passages([]) == []


def test_passages_none() -> None:
    with pytest.raises(TypeError, match="passages is None"):
        check_passages(None)


@pytest.mark.parametrize("value", ["one passage", b"bytes"])
def test_passages_single_string_refused(value: object) -> None:
    with pytest.raises(TypeError, match=r"not a single string: wrap it as \[passage\]"):
        check_passages(value)


@pytest.mark.parametrize(("value", "name"), [({"a"}, "set"), (5, "int"), ({"text": "a"}, "dict")])
def test_passages_not_a_sequence(value: object, name: str) -> None:
    with pytest.raises(TypeError, match=f"passages must be a list of strings, not {name}"):
        check_passages(value)


def test_passages_element_named() -> None:
    with pytest.raises(TypeError, match=r"passages\[2\] must be a string, not NoneType"):
        check_passages(["a", "b", None])


def test_pairs_list_of_pairs() -> None:
    assert check_pairs([("q", "p"), ["q2", "p2"]]) == [("q", "p"), ("q2", "p2")]
    assert check_pairs([]) == []


@pytest.mark.parametrize("pair", [("q", "p"), ["q", "p"]])
def test_single_pair_form_like_flagreranker(pair: object) -> None:
    assert check_pairs(pair) == [("q", "p")]


def test_pairs_of_other_sequence_and_str_types_are_accepted_in_order() -> None:
    from collections import UserString, namedtuple

    class Text(str):
        pass

    pair = namedtuple("pair", "query passage")
    got = check_pairs([("q", "p"), pair("q2", "p2"), ("q3", Text("p3")), ["q4", "p4"]])
    assert got == [("q", "p"), ("q2", "p2"), ("q3", "p3"), ("q4", "p4")]
    assert all(type(x) is tuple for x in got)
    with pytest.raises(TypeError, match=r"pairs\[2\]\[1\] \(the passage\) must be a string, not UserString"):
        check_pairs([("q", "p"), pair("q2", "p2"), ("q3", UserString("p3"))])
    assert check_pairs(tuple(("q", f"p{i}") for i in range(3))) == [("q", "p0"), ("q", "p1"), ("q", "p2")]


def test_two_pairs_are_not_mistaken_for_one() -> None:
    assert check_pairs([["q", "p"], ["q", "p2"]]) == [("q", "p"), ("q", "p2")]


def test_pairs_none() -> None:
    with pytest.raises(TypeError, match="pairs is None"):
        check_pairs(None)


@pytest.mark.parametrize("value", ["qp", b"qp", 7, {"q": "p"}])
def test_pairs_wrong_container(value: object) -> None:
    with pytest.raises(TypeError, match="pairs must be a list of"):
        check_pairs(value)


@pytest.mark.parametrize("bad", [("q",), ("q", "p", "x"), "qp", 5])
def test_pair_of_wrong_shape(bad: object) -> None:
    with pytest.raises(TypeError, match=r"pairs\[1\] must be a \(query, passage\) pair"):
        check_pairs([("q", "p"), bad])


def test_pair_members_must_be_strings() -> None:
    with pytest.raises(TypeError, match=r"pairs\[0\]\[0\] \(the query\) must be a string, not int"):
        check_pairs([(1, "p")])
    with pytest.raises(TypeError, match=r"pairs\[1\]\[1\] \(the passage\) must be a string, not NoneType"):
        check_pairs([("q", "p"), ("q", None)])


def test_single_pair_with_non_string_is_treated_as_a_list_and_refused() -> None:
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        check_pairs(["q", 3])


@pytest.mark.parametrize("text", ["q \ud800", "\udfff", "caf\u00e9 \ud83d"])
def test_lone_surrogates_are_a_value_error_naming_the_field(text: str) -> None:
    with pytest.raises(ValueError, match="query holds a lone surrogate"):
        check_query(text)
    with pytest.raises(ValueError, match=r"passages\[1\] holds a lone surrogate"):
        check_passages(["fine", text])
    with pytest.raises(ValueError, match=r"pairs\[1\]\[1\] \(the passage\) holds a lone surrogate"):
        check_pairs([("q", "p"), ("q", text)])


def test_well_formed_non_ascii_text_passes() -> None:
    text = "café 🙂 Ελληνικά 日本語"
    assert check_query(text) == text
    assert check_passages([text]) == [text]
    assert check_pairs([(text, text)]) == [(text, text)]
