"""What every loopback vendor fake shares: a threaded HTTP server on 127.0.0.1 with a free port, its lifecycle
(``with`` or ``start``/``stop``), its ``url``, and writing one JSON answer. ``tests/fakes/vendors.py`` (API-key
vendors) and ``tests/fakes/oauth_vendor.py`` (OAuth vendors) build on it; each keeps its own request handling."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


def send_json(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    """Write one JSON answer on a keep-alive connection; a client that already gave up (e.g. after a stall) only
    closes the connection."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive (as httpx expects), no Nagle delay between headers and body, no request log."""

    server: LoopbackHTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: Any


class LoopbackServer:
    """Serve ``handler_class`` on 127.0.0.1 in a daemon thread named ``name``; the handler reaches this object as
    ``self.server.fake``."""

    name = "fake-vendor"
    handler_class: ClassVar[type[QuietHandler]]
    _server: LoopbackHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._server is None:
            server = LoopbackHTTPServer(("127.0.0.1", 0), self.handler_class)
            server.fake = self
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (safe to call twice)."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the server must be started)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — the base URL to give a client."""
        return f"http://127.0.0.1:{self.port}"
