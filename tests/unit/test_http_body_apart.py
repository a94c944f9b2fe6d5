"""``RetryingClient.send(body_apart=True)`` against a real loopback server: a success's body comes back apart
from the response (which keeps no copy), an error keeps its body for its detail, and a body cut off mid-way is a
network error that is retried like any other."""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from app.core.http import RetryingClient, RetryPolicy

BIG = json.dumps({"agents": [{"id": i, "serial": f"SER-{i}"} for i in range(2_000)]}).encode()


class Script:
    """What the server answers, in order: (status, body, declared length or None for the real one)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes, int | None]] = []
        self.lock = threading.Lock()

    def next(self) -> tuple[int, bytes, int | None]:
        with self.lock:
            return self.answers.pop(0) if self.answers else (200, BIG, None)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status, body, declared = script.next()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(declared if declared is not None else len(body)))
            if declared is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            if declared is not None:
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/agents", script
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def client() -> Iterator[RetryingClient]:
    with httpx.Client(timeout=10.0) as http:
        yield RetryingClient(http, RetryPolicy(max_attempts=3, budget=30.0, base=0.0, cap=0.0), sleep=lambda s: None)


def test_a_success_body_comes_back_apart_and_the_response_keeps_no_copy(
    server: tuple[str, Script], client: RetryingClient
) -> None:
    url, _ = server
    sent = client.send("GET", url, body_apart=True)
    assert sent.response.status_code == 200 and sent.body == BIG
    with pytest.raises(httpx.ResponseNotRead):
        _ = sent.response.content
    assert sent.response.is_closed


def test_without_body_apart_the_response_holds_its_body(server: tuple[str, Script], client: RetryingClient) -> None:
    url, _ = server
    sent = client.send("GET", url)
    assert sent.body is None and sent.response.content == BIG


def _bodies_left_to_the_collector(send: Callable[[], object]) -> int:
    """How many copies of ``BIG`` the garbage of ``send`` holds (reference cycles only the collector frees)."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        send()
        gc.collect()
        held = [r for o in gc.garbage for r in gc.get_referents(o) if isinstance(r, bytes) and r == BIG]
        return len(held)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_the_body_is_not_left_to_the_collector(server: tuple[str, Script], client: RetryingClient) -> None:
    """What it is for: a sync holds off full collections, so a body held by a response's cycle would stay."""
    url, _ = server
    assert _bodies_left_to_the_collector(lambda: client.send("GET", url).response.content) == 1
    assert _bodies_left_to_the_collector(lambda: client.send("GET", url, body_apart=True).body) == 0


def test_an_error_keeps_its_body_on_the_response(server: tuple[str, Script], client: RetryingClient) -> None:
    url, script = server
    script.answers.append((404, b'{"errors": [{"message": "no such thing"}]}', None))
    sent = client.send("GET", url, body_apart=True)
    assert sent.response.status_code == 404 and sent.body is None
    assert sent.response.json() == {"errors": [{"message": "no such thing"}]}


def test_a_retried_error_then_success_gives_the_success_body(
    server: tuple[str, Script], client: RetryingClient
) -> None:
    url, script = server
    script.answers.append((503, b'{"message": "busy"}', None))
    sent = client.send("GET", url, body_apart=True)
    assert (sent.response.status_code, sent.attempts, sent.body) == (200, 2, BIG)


def test_a_body_cut_off_mid_way_is_retried_as_a_network_error(
    server: tuple[str, Script], client: RetryingClient
) -> None:
    url, script = server
    script.answers.append((200, BIG[:1000], len(BIG)))
    sent = client.send("GET", url, body_apart=True)
    assert (sent.attempts, sent.body) == (2, BIG)
