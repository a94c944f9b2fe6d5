"""Slack's side of Socket Mode on 127.0.0.1: a WebSocket server that sends envelopes and collects acks.

The app asks the Web API (``apps.connections.open``, with its app-level token) for a WebSocket URL; the fake
Web API hands out this server's. On connect the server says ``hello`` as Slack does; ``send`` wraps a payload
in an envelope (``events_api``, ``interactive`` or ``slash_commands``) and ``ack`` waits for the app's
acknowledgement of it, which carries the response payload (e.g. a slash command's text) when there is one.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve


class FakeSocketMode:
    """A WebSocket endpoint speaking Slack's Socket Mode envelope protocol to one app connection."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._connection: ServerConnection | None = None
        self._acks: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.connections = 0
        self.unexpected: list[str] = []
        self._server: Server | None = None

    def start(self) -> FakeSocketMode:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread."""
        self._server = serve(self._session, "127.0.0.1", 0)
        threading.Thread(target=self._server.serve_forever, name="fake-socket-mode", daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the connection and the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """What ``apps.connections.open`` returns."""
        assert self._server is not None
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link/?ticket=fake-ticket&app_id=A0TEST"

    def wait_connected(self, timeout: float = 30.0) -> None:
        """Wait until the app holds an open connection."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._connection is not None, timeout):
                raise AssertionError("the app did not open a Socket Mode connection")

    def send(self, envelope_type: str, payload: dict[str, Any]) -> str:
        """Deliver ``payload`` in a new envelope; return its ``envelope_id``."""
        envelope_id = f"env-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": envelope_type != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
        }
        with self._lock:
            connection = self._connection
        assert connection is not None, "no app connected"
        connection.send(json.dumps(envelope))
        return envelope_id

    def ack(self, envelope_id: str, timeout: float = 3.0) -> dict[str, Any]:
        """The app's acknowledgement of an envelope; fails after ``timeout`` (Slack's is 3 seconds)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._lock.wait_for(lambda: envelope_id in self._acks, max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"envelope {envelope_id} was not acknowledged within {timeout} s")
            return self._acks[envelope_id]

    def _session(self, connection: ServerConnection) -> None:
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0TEST"}}
        connection.send(json.dumps(hello))
        with self._lock:
            self._connection = connection
            self.connections += 1
            self._lock.notify_all()
        try:
            for message in connection:
                try:
                    ack = json.loads(message)
                    envelope_id = ack["envelope_id"]
                except (ValueError, KeyError, TypeError):
                    self.unexpected.append(str(message))
                    continue
                with self._lock:
                    self._acks[envelope_id] = ack
                    self._lock.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                if self._connection is connection:
                    self._connection = None
