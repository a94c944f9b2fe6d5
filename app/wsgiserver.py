"""A multi-threaded WSGI server from the standard library that logs through ``logging``."""

from __future__ import annotations

import logging
import socket
import socketserver
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as _make_server
from wsgiref.types import WSGIApplication

log = logging.getLogger("accessbot.http")


class QuietRequestHandler(WSGIRequestHandler):
    """Request lines go to the ``accessbot.http`` logger at DEBUG, protocol errors at INFO."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug('%s "%s" %s %s', self.address_string(), self.requestline, code, size)

    def log_error(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """``wsgiref``'s server, one daemon thread per connection."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log failures outside the application (a dropped connection) instead of printing them."""
        log.warning("error while serving %s", client_address, exc_info=True)


class ThreadingWSGIServerV6(ThreadingWSGIServer):
    """The same, listening on an IPv6 address."""

    address_family = socket.AF_INET6


def make_server(app: WSGIApplication, host: str = "127.0.0.1", port: int = 8088) -> ThreadingWSGIServer:
    """Bind a threaded server for ``app`` (port 0 picks a free port; see ``server.server_port``)."""
    server_class = ThreadingWSGIServerV6 if ":" in host else ThreadingWSGIServer
    server = _make_server(host, port, app, server_class=server_class, handler_class=QuietRequestHandler)
    assert isinstance(server, ThreadingWSGIServer)
    return server
