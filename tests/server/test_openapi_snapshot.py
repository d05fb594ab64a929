"""The OpenAPI document is a contract with clients: any change must show up here and be committed on purpose.

Regenerate after an intended change with ``CROSSRANK_UPDATE_SNAPSHOT=1 pytest tests/server/test_openapi_snapshot.py``.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

from crossrank.core.settings import ServerSettings
from crossrank.server.app import create_app

SNAPSHOT = Path(__file__).parent / "openapi.snapshot.json"


def test_openapi_matches_snapshot() -> None:
    document = create_app(ServerSettings(), static_dir=None).openapi()
    document["info"].pop("version", None)  # the package version moves on its own
    current = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("CROSSRANK_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(current, encoding="utf-8")
    expected = SNAPSHOT.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(expected.splitlines(True), current.splitlines(True), "snapshot", "now", n=2))
    assert current == expected, "API changed: review, then regenerate the snapshot\n" + diff[:4000]
