"""The HTTP edges under attack, full size, on 127.0.0.1: accessbot's listeners against a naive baseline.

    python bench/edges.py [--connections 1000] [--burst 300] [--timeout 10] [--only slack|tailnet|starts]

For each app — the Slack app (``accessbot serve`` in HTTP mode, the Procfile's ``web``) and the built-in
tailnet's API (``accessbot tailnet serve``) — two servers run as subprocesses with the soft open-file limit at
1,024 (a common default): **accessbot** (the real command, waitress with ``HTTP_IDLE_TIMEOUT`` and
``HTTP_READ_TIMEOUT`` set to ``--timeout``) and **naive** (the same WSGI app on the standard library's threaded
``wsgiref`` server; for Slack, Bolt's stock ``SlackRequestHandler``, which reads and parses before it verifies).

Probes, each bounded in count and time (a request that gets no answer within 5 s counts as failed):
* alone: 20 sequential ``GET /healthz``, median latency;
* under siege: ``--connections`` idle connections plus as many trickling ones (a byte a second, half in the
  request head, half in a body), then 20 sequential ``GET /healthz``: answered, median and worst latency; then,
  ``--timeout`` + 5 s later, how many of the siege connections the server still holds open;
* burst: ``--burst`` connections at once, each one ``GET /healthz``: errors, p50, p99;
* (Slack) one unsigned 16-MB body: growth of the server's peak RSS, status and time to answer.

And parallel first starts: ``--rounds`` times, 10 processes started at once on a fresh SQLite file —
**accessbot** runs ``accessbot devices list --json`` (it migrates the new file itself, under the migration
lock), **naive** runs alembic's upgrade as accessbot did before the lock; failures are counted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import Process, process  # noqa: E402  (bench/load.py: subprocess with collected output)

from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI  # noqa: E402

SECRET = "bench-edges-signing-secret"
ANSWER_TIMEOUT = 5.0


# -- the naive baseline server (runs in its own subprocess) --------------------------------------------------


def serve_naive(app_name: str) -> None:
    """Serve ``app_name`` on wsgiref's threaded server, print the port, run until killed."""
    import socketserver
    from wsgiref.simple_server import WSGIServer, make_server

    from app import bootstrap

    class Threaded(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    runtime = bootstrap.build()
    if app_name == "tailnet":
        from app.tailnet.api import make_api

        app: Any = make_api(runtime.tailnet, runtime.db, clock=runtime.clock)  # type: ignore[arg-type]
    else:
        from slack_bolt.adapter.wsgi import SlackRequestHandler

        bolt = SlackRequestHandler(runtime.bolt_app())

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            if environ.get("PATH_INFO") == "/healthz":
                start_response("200 OK", [("Content-Type", "application/json")])
                return [b'{"ok": true}']
            return bolt(environ, start_response)

    server = make_server("127.0.0.1", 0, app, server_class=Threaded)
    print(f"naive {app_name} on port {server.server_port}", flush=True)
    server.serve_forever()


# -- clients -------------------------------------------------------------------------------------------------


def healthz(port: int) -> float | None:
    """Seconds to answer one ``GET /healthz`` on a new connection, or ``None`` (error, no answer in time)."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    except OSError:
        return None
    return time.monotonic() - started if data.startswith(b"HTTP/1.") else None


def sequential(port: int, count: int = 20) -> list[float | None]:
    return [healthz(port) for _ in range(count)]


def describe(latencies: list[float | None]) -> str:
    ok = [x for x in latencies if x is not None]
    if not ok:
        return f"0/{len(latencies)} answered"
    return (
        f"{len(ok)}/{len(latencies)} answered, median {statistics.median(ok) * 1000:.0f} ms, "
        f"worst {max(ok) * 1000:.0f} ms"
    )


def open_siege(port: int, count: int) -> list[socket.socket]:
    conns: list[socket.socket] = []
    deadline = time.monotonic() + 30  # a server that stopped accepting makes each connect wait: give up then
    for number in range(2 * count):
        if time.monotonic() > deadline:
            break
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=1)
        except OSError:
            continue
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            if number % 4 == 1:
                conn.send(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n")
            elif number % 4 == 3:
                conn.send(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n")
        conns.append(conn)
    return conns


@contextmanager
def trickling(conns: list[socket.socket]) -> Iterator[None]:
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(1.0):
            for number, conn in enumerate(conns):
                if number % 2:
                    with contextlib.suppress(OSError):
                        conn.send(b"X")

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def still_open(conns: list[socket.socket]) -> int:
    count = 0
    for conn in conns:  # non-blocking sockets: recv says at once whether the server has closed
        try:
            while conn.recv(65536):
                pass
        except BlockingIOError:
            count += 1
        except OSError:
            pass
    return count


def burst(port: int, count: int) -> str:
    barrier = threading.Barrier(count, timeout=30)

    def one(_: int) -> float | None:
        barrier.wait()
        return healthz(port)

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(one, range(count)))
    ok = sorted(x for x in results if x is not None)
    if not ok:
        return f"{count} errors"
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))]
    return f"{count - len(ok)} errors, p50 {statistics.median(ok) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"


def _readable(conn: socket.socket) -> bool:
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    return bool(poller.poll(0))


def peak_rss_mb(pid: int) -> float:
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


def big_unsigned_body(port: int, pid: int) -> str:
    healthz(port)
    before = peak_rss_mb(pid)
    body = b"payload=" + b"%7B" * (16 * 1024 * 1024 // 3)
    started = time.monotonic()
    status = "no answer"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            head += b"X-Slack-Request-Timestamp: 1\r\nX-Slack-Signature: v0=00\r\n"
            conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
            with contextlib.suppress(OSError):
                for offset in range(0, len(body), 1 << 16):
                    conn.sendall(body[offset : offset + (1 << 16)])
                    if _readable(conn):
                        break
            answer = conn.recv(200)
            status = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
    except OSError as exc:
        status = f"{type(exc).__name__}"
    seconds = time.monotonic() - started
    time.sleep(0.5)
    return f"peak RSS +{peak_rss_mb(pid) - before:.1f} MB, {status!r} after {seconds:.2f} s"


# -- the run -------------------------------------------------------------------------------------------------


@contextmanager
def files_limited_to_1024() -> Iterator[None]:
    """A child started in this block inherits a soft open-file limit of 1,024; this process gets its own back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextmanager
def server(kind: str, app_name: str, env: dict[str, str]) -> Iterator[tuple[Process, int]]:
    if kind == "accessbot":
        args = ["serve", "--host", "127.0.0.1", "--port", "0", "--no-scheduler"]
        if app_name == "tailnet":
            args = ["tailnet", "serve", "--host", "127.0.0.1", "--port", "0"]
        cmd = [sys.executable, "-m", "app", *args]
        pattern = r"(?:HTTP on 127\.0\.0\.1:|http://127\.0\.0\.1:)(\d+)"
    else:
        cmd = [sys.executable, __file__, "--naive-server", app_name]
        pattern = r"on port (\d+)"
    with contextlib.ExitStack() as stack:
        with files_limited_to_1024():  # both servers start from the same common default
            proc = stack.enter_context(process(f"{kind}-{app_name}", cmd, env))
        match = proc.wait_for(pattern, 60)
        if match is None:
            raise SystemExit(f"{kind} {app_name} did not start:\n" + "".join(proc.lines[-30:]))
        yield proc, int(match.group(1))


def probe(kind: str, app_name: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    results: dict[str, str] = {}
    with server(kind, app_name, env) as (proc, port):
        results["alone"] = describe(sequential(port))
        conns = open_siege(port, args.connections)
        results["siege opened"] = f"{len(conns)} of {2 * args.connections} connections"
        with trickling(conns):
            results["under siege"] = describe(sequential(port))
            time.sleep(args.timeout + 5)
            results[f"still open after {args.timeout + 5:.0f} s"] = str(still_open(conns))
        for conn in conns:
            conn.close()
        time.sleep(1)
        results["burst"] = burst(port, args.burst)
        if app_name == "slack":
            results["unsigned 16 MB"] = big_unsigned_body(port, proc.proc.pid)
    return results


NAIVE_UPGRADE = (
    "import sys; from alembic import command; from app.db import Database; "
    "from app.db.migrate import alembic_config; command.upgrade(alembic_config(Database(sys.argv[1]).engine), 'head')"
)


def parallel_starts(kind: str, rounds: int, env: dict[str, str]) -> str:
    """``rounds`` times 10 processes at once on a new SQLite file: how many failed."""
    import subprocess

    failed_processes = failed_rounds = 0
    for number in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/fresh.db"
            if kind == "accessbot":
                cmd = [sys.executable, "-m", "app", "devices", "list", "--json"]
            else:
                cmd = [sys.executable, "-c", NAIVE_UPGRADE, url]
            procs = [
                subprocess.Popen(
                    cmd,
                    env={**env, "DATABASE_URL": url},
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(10)
            ]
            failures = 0
            for proc in procs:
                _, err = proc.communicate(timeout=180)
                failures += proc.returncode != 0 or "Traceback" in err
            failed_processes += failures
            failed_rounds += failures > 0
        print(f"  starts ({kind}) round {number + 1}: {failures} of 10 failed", flush=True)
    return f"{failed_rounds}/{rounds} rounds failed, {failed_processes}/{10 * rounds} processes failed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000, help="idle and as many trickling (default 1000)")
    parser.add_argument("--burst", type=int, default=300, help="connections at once (default 300)")
    parser.add_argument("--timeout", type=float, default=10.0, help="HTTP_IDLE/READ_TIMEOUT for accessbot (10 s)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of 10 parallel first starts (default 10)")
    parser.add_argument("--only", choices=("slack", "tailnet", "starts"), help="one probe only")
    parser.add_argument("--naive-server", choices=("slack", "tailnet"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        serve_naive(args.naive_server)
        return
    with tempfile.TemporaryDirectory() as tmp, FakeSlackAPI(token=DEFAULT_TOKEN) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TAILSCALE_", "HTTP_"))}
        env.update(
            DATABASE_URL=f"sqlite:///{tmp}/edges.db",
            SLACK_BOT_TOKEN=DEFAULT_TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=fake.base_url,
            HTTP_IDLE_TIMEOUT=str(args.timeout),
            HTTP_READ_TIMEOUT=str(args.timeout),
            NO_PROXY="127.0.0.1",
        )
        if args.only in (None, "starts"):
            starts = {kind: parallel_starts(kind, args.rounds, env) for kind in ("accessbot", "naive")}
            print(f"\n== 10 parallel first starts on a fresh SQLite file, {args.rounds} rounds")
            print(f"  accessbot: {starts['accessbot']}\n  naive:     {starts['naive']}")
        for app_name in [args.only] if args.only in ("slack", "tailnet") else [] if args.only else ["slack", "tailnet"]:
            table = {kind: probe(kind, app_name, env, args) for kind in ("accessbot", "naive")}
            print(f"\n== {app_name}: {args.connections} idle + {args.connections} trickling, burst {args.burst}")
            for row in table["accessbot"]:
                print(f"  {row:<24} accessbot: {table['accessbot'][row]}")
                print(f"  {'':<24} naive:     {table['naive'].get(row, '-')}")


if __name__ == "__main__":
    main()
