"""A WSGI app served over TCP on 127.0.0.1 by accessbot's own server, for the length of a ``with`` block."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.types import WSGIApplication

from app.web.server import make_server


@contextmanager
def serving(app: WSGIApplication) -> Iterator[str]:
    """Serve ``app`` on a free port in a background thread; yields its base URL; stops the server after."""
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name="test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
