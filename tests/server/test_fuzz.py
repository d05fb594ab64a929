"""Fuzzing with schemathesis against the service's own OpenAPI: no 5xx, every response conforms to the schema.

Driven through hypothesis directly (schemathesis' pytest plugin does not load under this pytest), a bounded number of
examples per operation so the whole run stays well under a minute.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
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


SERVICE_CHECKS = ("not_a_server_error,unsupported_method,status_code_conformance,content_type_conformance,"
                  "response_headers_conformance,response_schema_conformance")


@pytest.mark.slow
def test_schemathesis_coverage_phase_finds_no_5xx_and_no_wrong_method(live_server: LiveServer) -> None:
    """schemathesis' own runner on the live OpenAPI document, its coverage phase included (the phase that sends every
    undocumented method to every path and wants 405 with Allow). Lenient parsing (``"true"``, ``0`` as booleans) is
    a documented choice, so its negative-data check is not run."""
    st = Path(sys.executable).with_name("st")
    command = [str(st), "run", live_server.url + "/openapi.json", "-H", f"Authorization: Bearer {API_KEY}",
               "--phases", "examples,coverage", "-n", "10", "--checks", SERVICE_CHECKS, "--no-color"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Unsupported method" not in result.stdout and "Server error" not in result.stdout


def test_every_undocumented_method_is_405_with_the_documented_allow(live_server: LiveServer) -> None:
    """What the coverage phase checks, over every path and method, in a second."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    for path, operations in live_server.app.openapi()["paths"].items():
        documented = {m.upper() for m in operations}
        allow = documented | ({"HEAD"} if "GET" in documented else set())
        url = live_server.url + path.replace("{model_id}", "tiny-reranker")
        for method in sorted({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"} - allow):
            resp = httpx.request(method, url, headers=auth)
            assert resp.status_code == 405, (method, path, resp.status_code)
            assert set(resp.headers["allow"].split(", ")) == allow, (method, path)
