"""``crossrank serve`` as users start it: options from CROSSRANK_* variables, ready only after loading, graceful
exit 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_command_env_options_and_sigterm(tiny_model_dir: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC), "CROSSRANK_MODEL": str(tiny_model_dir), "CROSSRANK_DEVICE": "cpu",
           "CROSSRANK_PORT": str(port), "CROSSRANK_API_KEY": "env-key", "CROSSRANK_MAX_CLIENT_BATCH_SIZE": "3",
           "CROSSRANK_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "crossrank.server.command"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the service did not become ready"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        auth = {"Authorization": "Bearer env-key"}
        assert httpx.get(url + "/info").status_code == 401
        ok = httpx.post(url + "/v2/rerank", json={"query": "q", "documents": ["a", "b"]}, headers=auth)
        assert ok.status_code == 200 and len(ok.json()["results"]) == 2
        too_many = httpx.post(url + "/v2/rerank", json={"query": "q", "documents": ["a"] * 4}, headers=auth)
        assert too_many.status_code == 413
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
