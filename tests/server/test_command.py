"""``crossrank serve`` as users start it: options from CROSSRANK_* variables, ready only after loading, graceful
exit 0 on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def _serve(*args: str) -> Any:
    from typer.testing import CliRunner

    from crossrank.cli.app import app

    return CliRunner().invoke(app, ["serve", "--device", "cpu", "--port", str(_free_port()), *args])


@pytest.mark.parametrize("case", ["empty", "no-config", "broken-config", "truncated-weights"])
def test_a_model_that_cannot_load_is_one_line_and_exit_3(tiny_model_dir: Path, tmp_path: Path, case: str) -> None:
    model = tmp_path / case
    if case != "empty":
        shutil.copytree(tiny_model_dir, model)
        if case == "no-config":
            (model / "config.json").unlink()
        elif case == "broken-config":
            (model / "config.json").write_text("{not json")
        else:
            weights = next(model.glob("*.safetensors"))
            weights.write_bytes(weights.read_bytes()[:100])
    else:
        model.mkdir()
    result = _serve("--model", str(model))
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert f"error: cannot load the model {str(model)!r}" in result.output
    debug = _serve("--model", str(model), "--debug")
    assert debug.exit_code == 3 and "Traceback" in debug.output


@pytest.mark.parametrize("key", ["clé", "with space", "tab\tkey"])
def test_an_api_key_no_client_can_send_is_refused(key: str) -> None:
    result = _serve("--model", "/nonexistent", "--api-key", key)
    assert result.exit_code == 2 and "visible ASCII" in result.output
    assert "loading model" not in result.output  # refused before any loading


def test_serve_help_documents_the_limits() -> None:
    from typer.testing import CliRunner

    from crossrank.cli.app import app

    text = " ".join(CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output.split())
    for option in ("--served-model-name", "--any-model-name", "--max-queue-seconds", "--max-connections",
                   "--header-timeout", "--body-timeout", "--timeout-keep-alive", "--max-header-bytes",
                   "--max-headers", "--graceful-shutdown-seconds", "--health-stall-seconds",
                   "--release-memory-seconds", "--debug"):
        assert option in text, option


@pytest.mark.slow
def test_sigterm_exits_0_while_a_client_holds_a_half_sent_body(tiny_model_dir: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC), "CROSSRANK_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "crossrank.server.command", "--model", str(tiny_model_dir),
                             "--device", "cpu", "--port", str(port), "--body-timeout", "120",
                             "--graceful-shutdown-seconds", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}")
        with socket.create_connection(("127.0.0.1", port)) as held:
            held.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"query\":")
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.monotonic() < deadline, "the service did not become ready"
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
