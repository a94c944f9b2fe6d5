"""The HTTP server of every listener accessbot starts: waitress, with limits suited to the open internet.

Why waitress: its single I/O thread reads and buffers each whole request (headers and body) before one of a
bounded pool of application threads sees it, so slow or idle clients cost a socket and a buffer, never a thread;
it has a connection limit, a real listen backlog, a request-body cap and an idle timeout, is pure Python, and
is well kept (Pylons). What it lacks, and what this module adds on top of it:

- a deadline for receiving a whole request (``read_timeout``): waitress's idle timeout is reset by every byte,
  so a client trickling one byte every few seconds would otherwise hold its connection for ever;
- ``{"message": ...}`` JSON bodies for the errors waitress answers itself (413, 400), as every API here does;
- a run loop that another thread can stop (``shutdown``), finishing requests already being served: waitress's
  own ``run()`` stops only on a signal in its main thread, which tests and background listeners don't have.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any
from wsgiref.types import WSGIApplication

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask

log = logging.getLogger("accessbot.http")

ACCEPT_BATCH = 64
"""Connections accepted per turn of the I/O loop when many are waiting."""
DRAIN_SECONDS = 10.0
"""How long ``shutdown`` lets requests already being served finish before closing every connection."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one listener allows; README "Operations" lists the settings (``HTTP_*``) behind each field."""

    threads: int = 8
    """Application threads: requests served at once (more wait, already read, in a queue)."""
    connection_limit: int = 4096
    """Open connections at most; at the limit the quietest idle connection is closed to admit a new one, and
    when none is idle the server stops accepting until some close (the backlog holds the newcomers)."""
    backlog: int = 2048
    """Connections the kernel queues before the server accepts them (capped by ``net.core.somaxconn``)."""
    idle_timeout: float = 30.0
    """A connection with nothing under way (no partial request, no response) is closed after this many seconds."""
    read_timeout: float = 30.0
    """A request (headers and body) must arrive whole within this many seconds of its first byte."""
    max_body_bytes: int = 1 << 20
    """Larger bodies are refused with 413 from ``Content-Length`` (or as soon as a chunked body passes it)."""
    max_header_bytes: int = 64 << 10
    """Larger request heads (request line + headers) are refused with 431/400."""

    def __post_init__(self) -> None:
        for name in ("threads", "connection_limit", "backlog", "max_body_bytes", "max_header_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("idle_timeout", "read_timeout"):
            if not 0 < getattr(self, name) <= 3600:
                raise ValueError(f"{name} must be between 0 and 3600 seconds")


class _JsonErrorTask(ErrorTask):
    """Waitress's own refusals (body too large, malformed request) as ``{"message": ...}``."""

    def execute(self) -> None:
        error = self.request.error
        if error.code == 413:
            limit = self.channel.server.adj.max_request_body_size - 1
            message = f"the request body is larger than {limit} bytes"
        else:
            message = f"{error.reason}: {error.body}"
        body = json.dumps({"message": message}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    """A connection that remembers when the request it is receiving began."""

    error_task_class = _JsonErrorTask
    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.time()  # waitress's own clock (``last_activity``) is time.time()
        return bool(super().received(data))


class _Server(TcpWSGIServer):
    """Waitress's TCP server with three changes: a connection whose request has not arrived whole within
    ``read_timeout`` is closed; at the connection limit the longest-quiet connection with nothing under way
    makes room for a new one (so idle connections cannot lock everyone out); and up to ``ACCEPT_BATCH``
    connections are accepted per turn of the loop (waitress takes one, which makes a burst wait)."""

    channel_class = _Channel
    read_timeout = 30.0
    evicted = 0
    _next_eviction_log = 0.0

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections (channel_timeout)
        cutoff = now - self.read_timeout
        slow = [
            channel
            for channel in self.active_channels.values()
            if channel.request is not None and not channel.requests and channel.request_started < cutoff
        ]
        for channel in slow:
            channel.will_close = True
        if slow:
            log.info("closed %d connection(s) whose request did not arrive within %ss", len(slow), self.read_timeout)

    def readable(self) -> bool:
        if self.accepting and len(self._map) >= self.adj.connection_limit:
            self._make_room(len(self._map) - self.adj.connection_limit + ACCEPT_BATCH)
        return bool(super().readable())

    def _make_room(self, count: int) -> None:
        """Mark up to ``count`` (room for a batch of accepts) connections to close: those quiet for a second or
        more with no request being served, quietest first.

        They close in their own turn of the loop (``will_close``), never here: this runs while the loop builds
        its poll set, and a descriptor closed now could be reused by an accept before the poll results are read.
        """
        quiet_since = time.time() - 1.0
        closing = 0
        idle = []
        for channel in self.active_channels.values():
            if channel.will_close:
                closing += 1
            elif not channel.requests and not channel.total_outbufs_len and channel.last_activity < quiet_since:
                idle.append(channel)
        victims = heapq.nsmallest(max(0, count - closing), idle, key=lambda c: c.last_activity)
        for channel in victims:
            channel.will_close = True
        self.evicted += len(victims)
        if victims and time.monotonic() >= self._next_eviction_log:
            self._next_eviction_log = time.monotonic() + 60
            log.warning(
                "at the connection limit (%d): closing quiet connections to admit new ones (%d so far)",
                self.adj.connection_limit,
                self.evicted,
            )

    def handle_accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            before = len(self._map)
            super().handle_accept()
            if len(self._map) == before or len(self._map) >= self.adj.connection_limit:
                return


class HttpServer:
    """One listening socket served by waitress; ``serve_forever`` in one thread, ``shutdown`` from any other."""

    def __init__(self, app: WSGIApplication, host: str, port: int, limits: ServerLimits) -> None:
        self.limits = limits
        adjustments = Adjustments(
            host=host,
            port=port,
            threads=limits.threads,
            connection_limit=limits.connection_limit,
            backlog=limits.backlog,
            channel_timeout=limits.idle_timeout,
            cleanup_interval=max(1, round(min(limits.idle_timeout, limits.read_timeout) / 10)),
            max_request_body_size=limits.max_body_bytes + 1,  # waitress refuses a body >= its limit
            max_request_header_size=limits.max_header_bytes,
            asyncore_use_poll=True,  # select() cannot watch more than 1,024 sockets
            clear_untrusted_proxy_headers=False,  # the apps read X-Forwarded-For themselves (TRUSTED_PROXIES)
            expose_tracebacks=False,
            ident="accessbot",
        )
        _raise_file_limit(limits.connection_limit + 64)
        self._map: dict[int, Any] = {}
        self._server = _Server(app, map=self._map, adj=adjustments)
        self._server.read_timeout = limits.read_timeout
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def server_port(self) -> int:
        """The port listened on (the one picked when 0 was asked for)."""
        return int(self._server.effective_port)

    @property
    def open_connections(self) -> int:
        """Client connections open now."""
        return len(self._server.active_channels)

    def serve_forever(self) -> None:
        """Serve until ``shutdown``; then stop accepting, let requests under way finish (``DRAIN_SECONDS`` at
        most) and close every connection."""
        self._stopped.clear()
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=1.0, map=self._map, use_poll=True, count=1)
            self._drain()
        finally:
            self._close()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (from another thread) and wait until it has returned."""
        self._stop.set()
        with contextlib.suppress(OSError):  # the loop has already stopped and closed its wake-up pipe
            self._server.pull_trigger()
        self._stopped.wait(DRAIN_SECONDS + 5)

    def server_close(self) -> None:
        """Release the listening socket and the threads if ``serve_forever`` never ran."""
        if self._map:
            self._close()

    def _drain(self) -> None:
        server = self._server
        server.accepting = False
        server.del_channel()  # off the map: no accept() any more; the socket itself is closed in _close
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline and any(
            channel.requests or channel.total_outbufs_len for channel in list(server.active_channels.values())
        ):
            wasyncore.loop(timeout=0.1, map=self._map, use_poll=True, count=1)

    def _close(self) -> None:
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(self._map)
        self._server.socket.close()


def _raise_file_limit(wanted: int) -> None:
    """Let the process open ``wanted`` files (the soft limit is often 1,024) as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "the open-file limit (%d) is below HTTP_CONNECTION_LIMIT (%d): raise `ulimit -n` or lower the limit",
            target,
            wanted - 64,
        )


def make_server(
    app: WSGIApplication, host: str = "127.0.0.1", port: int = 8088, limits: ServerLimits | None = None
) -> HttpServer:
    """Bind a server for ``app`` (port 0 picks a free port; see ``server.server_port``); ``serve_forever`` runs it."""
    return HttpServer(app, host, port, limits or ServerLimits())
