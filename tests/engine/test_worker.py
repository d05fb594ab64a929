"""When the engine's scheduler takes the next batch: the pure rule behind it."""

from __future__ import annotations

import doctest

import pytest

from crossrank.engine import worker
from crossrank.engine.worker import ready_to_take

BUDGET = 32_768


@pytest.mark.parametrize(
    ("queued", "in_flight", "in_flight_tokens", "limit", "devices", "take"),
    [
        (0, 0, 0, 3, 1, False),  # nothing queued
        (100, 0, 0, 3, 1, True),  # an idle device gets even one small slice at once
        (100, 1, BUDGET - 1, 3, 1, True),  # less than a batch in hand: feed it
        (100, 1, BUDGET, 3, 1, False),  # a batch in hand: let what arrives gather
        (BUDGET, 2, 2 * BUDGET, 3, 1, True),  # a full batch is queued
        (BUDGET, 3, 0, 3, 1, False),  # the runtime has no room
        (100, 2, BUDGET + 1, 6, 2, True),  # two devices: less than a batch each
        (100, 2, 2 * BUDGET, 6, 2, False),
    ],
)
def test_ready_to_take(queued: int, in_flight: int, in_flight_tokens: int, limit: int, devices: int,
                       take: bool) -> None:
    assert ready_to_take(queued, in_flight, in_flight_tokens, limit=limit, budget=BUDGET, devices=devices) is take


def test_examples_in_the_docstring_hold() -> None:
    assert doctest.testmod(worker).failed == 0
