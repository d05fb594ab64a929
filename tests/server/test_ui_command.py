"""``crossrank ui``: the page address, and opening the browser only once the service reports healthy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import typer
from typer.testing import CliRunner

from crossrank.server import ui_command
from crossrank.server.ui_command import UI_CONTEXT, is_healthy, open_when_healthy, page_url, ui


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8000/"), ("0.0.0.0", "http://127.0.0.1:8000/"),
    ("::", "http://[::1]:8000/"), ("localhost", "http://localhost:8000/"),
])
def test_page_url(host: str, url: str) -> None:
    assert page_url(host, 8000) == url


@pytest.fixture
def warming_service() -> Iterator[tuple[str, list[str]]]:
    """A stand-in service whose /health answers 503 twice (model loading), then 200; it records every path asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            ready = self.path == "/health" and asked.count("/health") > 2
            self.send_response(200 if ready else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", asked
    httpd.shutdown()
    httpd.server_close()


def test_opens_the_page_once_health_is_200(warming_service: tuple[str, list[str]]) -> None:
    url, asked = warming_service
    opened: list[str] = []
    assert open_when_healthy(url, threading.Event(), opener=opened.append, poll=0.01, timeout=10)
    assert opened == [url]
    assert asked == ["/health"] * 3


def test_gives_up_when_stopped_or_never_healthy(warming_service: tuple[str, list[str]]) -> None:
    url, _ = warming_service
    opened: list[str] = []
    stop = threading.Event()
    stop.set()
    assert not open_when_healthy(url, stop, opener=opened.append, poll=0.01, timeout=10)
    assert not open_when_healthy("http://127.0.0.1:9/", threading.Event(), opener=opened.append, poll=0.01,
                                 timeout=0.05)
    assert opened == []
    assert not is_healthy("http://127.0.0.1:9/")


def test_ui_hands_every_other_option_to_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """`crossrank ui --port P --api-key K` runs `serve --host H --port P --api-key K`; the opener is off here."""
    received: list[tuple[str, int, str, str]] = []

    def serve(host: str = typer.Option(""), port: int = typer.Option(0), api_key: str = typer.Option(""),
              model: str = typer.Option("")) -> None:
        received.append((host, port, api_key, model))

    monkeypatch.setattr(ui_command, "serve", serve)
    outer = typer.Typer()
    outer.command("ui", context_settings=UI_CONTEXT)(ui)
    outer.command("other")(lambda: None)
    result = CliRunner().invoke(outer, ["ui", "--port", "8123", "--no-open", "--api-key", "k", "--model", "m"])
    assert result.exit_code == 0, result.output
    assert received == [("127.0.0.1", 8123, "k", "m")]
