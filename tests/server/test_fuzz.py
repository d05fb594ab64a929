"""Fuzzing with schemathesis against the service's own OpenAPI: no 5xx, every response conforms to the schema.

Driven through hypothesis directly (schemathesis' pytest plugin does not load under this pytest), a bounded number of
examples per operation so the whole run stays well under a minute.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from servertools import API_KEY, LiveServer

EXAMPLES_PER_OPERATION = 12


def test_every_operation_conforms(live_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_dict(live_server.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(base_url=live_server.url, headers={"Authorization": f"Bearer {API_KEY}"})

        check()
