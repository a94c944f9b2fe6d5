"""accessbot's additions to waitress (``app.web.server``), in-process on 127.0.0.1: eviction at the connection
limit, the request deadline, JSON refusals, the limits' validation and a graceful shutdown."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from app.web.server import HttpServer, ServerLimits, make_server


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(0.5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello %d" % len(body)]


@contextmanager
def running(limits: ServerLimits) -> Iterator[tuple[HttpServer, str]]:
    server = make_server(hello, "127.0.0.1", 0, limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=15)
        assert not thread.is_alive()


def wait_until(condition: Any, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def closed(conn: socket.socket) -> bool:
    conn.settimeout(0.01)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_at_the_connection_limit_quiet_connections_make_room_for_new_ones() -> None:
    with running(ServerLimits(connection_limit=40, idle_timeout=600, read_timeout=600)) as (server, url):
        idle = [socket.create_connection(("127.0.0.1", server.server_port)) for _ in range(40)]
        try:
            assert wait_until(lambda: server.open_connections >= 37)  # the server's own sockets count too
            time.sleep(1.2)  # quiet for over a second: they may be closed for a newcomer
            assert httpx.get(url + "/", timeout=10).text == "hello 0"
            assert wait_until(lambda: any(closed(conn) for conn in idle))
        finally:
            for conn in idle:
                conn.close()


def test_a_request_that_does_not_arrive_whole_in_time_is_closed_but_an_idle_keepalive_is_not_early() -> None:
    with running(ServerLimits(idle_timeout=30, read_timeout=1)) as (server, url):
        with socket.create_connection(("127.0.0.1", server.server_port)) as trickler:
            trickler.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            for _ in range(40):  # a byte every 0.1 s keeps it active, never complete
                if closed(trickler):
                    break
                trickler.sendall(b"X")
                time.sleep(0.1)
            assert closed(trickler)
        with httpx.Client(base_url=url, timeout=10) as client:  # a kept-alive connection between requests
            assert client.get("/").status_code == 200
            time.sleep(1.5)  # longer than read_timeout, shorter than idle_timeout
            assert client.get("/").status_code == 200


def test_the_servers_own_refusals_are_json() -> None:
    with running(ServerLimits(max_body_bytes=1024)) as (_server, url):
        assert httpx.post(url + "/", content=b"x" * 1024, timeout=10).text == "hello 1024"
        refused = httpx.post(url + "/", content=b"x" * 1025, timeout=10)
        assert refused.status_code == 413
        assert json.loads(refused.text) == {"message": "the request body is larger than 1024 bytes"}


def test_shutdown_lets_a_request_under_way_finish() -> None:
    answers: list[int] = []
    with running(ServerLimits()) as (server, url):
        client = threading.Thread(target=lambda: answers.append(httpx.get(url + "/slow", timeout=10).status_code))
        client.start()
        time.sleep(0.2)
        server.shutdown()
        client.join(timeout=10)
    assert answers == [200]


@pytest.mark.parametrize(
    "field, value", [("threads", 0), ("connection_limit", 0), ("idle_timeout", 0), ("read_timeout", 7200)]
)
def test_nonsense_limits_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ServerLimits(**{field: value})
