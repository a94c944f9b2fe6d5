"""The HTTP edges as an attacker meets them, on every listener accessbot starts, as real subprocesses on
127.0.0.1: ``accessbot serve`` in HTTP mode (the Procfile's ``web``), ``accessbot tailnet serve`` and the
``METRICS_PORT`` listener of ``accessbot worker``.

Idle and trickling connections must not stop a legitimate request and must be closed by the server; a burst
of connections gets no errors; an unsigned 16-MB body costs the Slack app almost no memory. Counts are kept
small enough for CI (the full-size probes are ``bench/edges.py``); waits are bounded, and no assertion is on
speed: a legitimate request only has to be answered within a generous client timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_processes import app_env
from tests.fakes.slack_api import FakeSlackAPI

IDLE_TIMEOUT = 2
READ_TIMEOUT = 3
CONNECTIONS = 150  # of each kind: idle, and trickling
BURST = 300
CLIENT_TIMEOUT = 10.0  # a legitimate request must be answered within this (generous: CI machines are slow)


@dataclass
class Listener:
    """A running server process and where it listens."""

    name: str
    proc: subprocess.Popen[str]
    port: int
    output: list[str]

    def rss_peak_kb(self) -> int:
        """The process's peak resident memory so far (VmHWM), in kB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        assert match, status
        return int(match.group(1))


COMMANDS = {
    "slack": (["serve", "--host", "127.0.0.1", "--port", "0", "--no-scheduler"], r"HTTP on 127\.0\.0\.1:(\d+)"),
    "tailnet": (["tailnet", "serve", "--host", "127.0.0.1", "--port", "0"], r"http://127\.0\.0\.1:(\d+)/api/v2/"),
    "metrics": (["worker"], r"metrics on port (\d+)"),
}


def start(name: str, env: dict[str, str], cwd: Path) -> Listener:
    args, pattern = COMMANDS[name]
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + 60
    port = None
    while port is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        output.append(line)
        match = re.search(pattern, line)
        if match:
            port = int(match.group(1))
    if port is None:
        proc.kill()
        raise AssertionError(f"{name} did not start:\n{''.join(output)}")
    # keep reading, or a chatty server blocks on a full pipe
    threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    return Listener(name, proc, port, output)


@pytest.fixture(params=sorted(COMMANDS))
def listener(
    request: pytest.FixtureRequest,
    db_url: str,
    fake_slack: FakeSlackAPI,
    slack_signing_secret: str,
    slack_bot_token: str,
    config_file: Path,
    tmp_path: Path,
) -> Iterator[Listener]:
    env = app_env(db_url, fake_slack, slack_signing_secret, slack_bot_token, config_file)
    env.update(HTTP_IDLE_TIMEOUT=str(IDLE_TIMEOUT), HTTP_READ_TIMEOUT=str(READ_TIMEOUT), METRICS_PORT="0")
    if request.param == "tailnet":
        env = {k: v for k, v in env.items() if not k.startswith("SLACK_")}
    running = start(request.param, env, tmp_path)
    try:
        yield running
    finally:
        running.proc.send_signal(signal.SIGTERM)
        try:
            running.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            running.proc.kill()
            raise AssertionError(f"{running.name} did not stop on SIGTERM") from None


def get_healthz(port: int, timeout: float = CLIENT_TIMEOUT) -> tuple[int, float]:
    """One legitimate request on a new connection: (status, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0
    return status, time.monotonic() - started


def closed_by_peer(conn: socket.socket) -> bool:
    """Whether the server has closed ``conn`` (EOF or reset), without waiting."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(65536) == b""  # data (an error page) is read away; the EOF follows
    except OSError:
        return True


def test_idle_and_trickling_connections_neither_block_a_request_nor_stay_open(listener: Listener) -> None:
    idle = [socket.create_connection(("127.0.0.1", listener.port), timeout=5) for _ in range(CONNECTIONS)]
    trickling = [socket.create_connection(("127.0.0.1", listener.port), timeout=5) for _ in range(CONNECTIONS)]
    for number, conn in enumerate(trickling):
        if number % 2:  # the request head, trickled
            conn.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n")
        else:  # a whole head, then the body trickled
            conn.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n")
    stop = threading.Event()

    def trickle() -> None:  # one more byte every 0.5 s: never idle, never done
        while not stop.wait(0.5):
            for conn in trickling:
                with contextlib.suppress(OSError):  # closed by the server: what the test waits for
                    conn.send(b"X")

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    try:
        answers = [get_healthz(listener.port) for _ in range(3)]
        assert [status for status, _ in answers] == [200, 200, 200], answers
        print(f"{listener.name}: /healthz with {2 * CONNECTIONS} bad connections open: {answers}")
        deadline = time.monotonic() + READ_TIMEOUT + IDLE_TIMEOUT + 15
        open_idle, open_trickling = list(idle), list(trickling)
        while (open_idle or open_trickling) and time.monotonic() < deadline:
            time.sleep(0.25)
            open_idle = [c for c in open_idle if not closed_by_peer(c)]
            open_trickling = [c for c in open_trickling if not closed_by_peer(c)]
        assert (len(open_idle), len(open_trickling)) == (0, 0), "the server left connections open"
        assert get_healthz(listener.port)[0] == 200
    finally:
        stop.set()
        feeder.join(timeout=5)
        for conn in idle + trickling:
            conn.close()


def test_a_burst_of_connections_gets_no_errors(listener: Listener) -> None:
    barrier = threading.Barrier(BURST, timeout=30)

    def one(_: int) -> tuple[int, float]:
        barrier.wait()
        try:
            return get_healthz(listener.port)
        except OSError as exc:
            return -1, float(exc.errno or 0)

    with ThreadPoolExecutor(BURST) as pool:
        results = list(pool.map(one, range(BURST)))
    errors = [r for r in results if r[0] != 200]
    seconds = sorted(s for status, s in results if status > 0)
    print(f"{listener.name}: burst of {BURST}: {len(errors)} errors, p50 {seconds[len(seconds) // 2]:.3f} s")
    assert errors == []


@pytest.mark.parametrize("listener", ["slack"], indirect=True)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_unsigned_16_mb_body_costs_almost_no_memory(listener: Listener, framing: str) -> None:
    get_healthz(listener.port)  # warm: the first request imports and allocates what every request needs
    before = listener.rss_peak_kb()
    body = b"payload=" + b"%7B" * (16 * 1024 * 1024 // 3)
    with socket.create_connection(("127.0.0.1", listener.port), timeout=CLIENT_TIMEOUT) as conn:
        head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        head += b"X-Slack-Request-Timestamp: 1\r\nX-Slack-Signature: v0=00\r\n"
        if framing == "content-length":
            conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
        else:
            conn.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        answer = b""
        for offset in range(0, len(body), 65536):  # send until the server answers or hangs up
            chunk = body[offset : offset + 65536]
            try:
                conn.sendall(chunk if framing == "content-length" else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
            if select.select([conn], [], [], 0)[0]:
                break
        try:
            while part := conn.recv(65536):
                answer += part
        except OSError:
            pass
    grown_mb = (listener.rss_peak_kb() - before) / 1024
    print(f"unsigned 16-MB body ({framing}): peak RSS +{grown_mb:.1f} MB, answer {answer[:40]!r}")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"message"' in answer
    assert grown_mb < 32
    assert get_healthz(listener.port)[0] == 200  # and the server goes on


def test_a_port_in_use_is_one_line(
    db_url: str,
    fake_slack: FakeSlackAPI,
    slack_signing_secret: str,
    slack_bot_token: str,
    config_file: Path,
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = app_env(db_url, fake_slack, slack_signing_secret, slack_bot_token, config_file)
        env = {k: v for k, v in env.items() if not k.startswith("SLACK_")}
        result = subprocess.run(
            [sys.executable, "-m", "app", "tailnet", "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "another process listens there" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_listener_runs_on_wsgiref() -> None:
    """``wsgiref`` serves nothing: the only server module is waitress-based."""
    root = Path(__file__).resolve().parents[2] / "app"
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if re.search(r"wsgiref\.simple_server|socketserver", path.read_text())
    ]
    assert offenders == []
    assert os.path.exists(root / "web" / "server.py")
