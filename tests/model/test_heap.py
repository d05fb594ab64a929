"""The C library's heap functions: found where the C library has them, None where not."""

from __future__ import annotations

import platform

import pytest

from crossrank.model import heap


def test_a_function_the_c_library_lacks_is_none() -> None:
    assert heap.libc_function("crossrank_no_such_function") is None


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_has_malloc_trim() -> None:
    trim = heap.libc_function("malloc_trim")
    assert trim is not None and trim(0) in (0, 1)  # 1: memory was given back


@pytest.mark.parametrize(("answer", "released"), [(1, True), (0, False)])
def test_release_free_heap_calls_malloc_trim_with_no_padding(monkeypatch: pytest.MonkeyPatch, answer: int,
                                                             released: bool) -> None:
    calls: list[tuple[str, int]] = []

    def fake(name: str):  # type: ignore[no-untyped-def]
        return lambda pad: calls.append((name, pad)) or answer

    monkeypatch.setattr(heap, "libc_function", fake)
    assert heap.release_free_heap() is released
    assert calls == [("malloc_trim", 0)]


def test_release_free_heap_without_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "libc_function", lambda name: None)
    assert heap.release_free_heap() is False
