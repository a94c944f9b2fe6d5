"""Benchmark the device picker's options answer through the HTTP app: inline against Bolt's path.

    python bench/options.py [--devices 50000] [--keystrokes 200] [--rounds 3] [--refreshes 4]

Builds a synthetic tailnet (realistic names, owners, tags, IPv4/IPv6 addresses, Tailscale's device JSON) in the
built-in store on a temporary SQLite file, and a sequence of keystrokes (people typing device names, IPs, tags
and ids letter by letter). Serves the Slack app over HTTP on 127.0.0.1 twice, on one set of services:

* inline: the production app (``Services.slack_wsgi``): the gate answers ``block_suggestion`` itself;
* naive:  the same app without inline answers: Bolt's listener, acknowledged through Bolt's ack poll.

Each keystroke is a signed ``block_suggestion`` posted over one persistent connection per run from a client
process (signed before the clock starts); both apps must give the same answer. Reports p50/p99 per round and
their medians over ``--rounds`` rounds, then the same while the index refreshes back to back (a device
changes, the scheduler's job sees the counter move and rebuilds), and the cost of a refresh: ``list_devices``
(the ORM JSON decode of every column) against ``index_devices``, and a refresh when nothing changed.
Client and server share the machine's CPUs (with whatever else runs there).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import bootstrap
from app.config.settings import Settings
from app.config.source import ConfigSource
from app.db import Database
from app.db.migrate import upgrade
from app.db.tables import DeviceRow
from app.slack.client import slack_client
from app.slack.device_index import DeviceIndex
from app.slack.http_app import events_app
from app.slack.ids import ActionId, BlockId
from app.slack.pacing import SLICE
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.builtin_devices import bump_generation
from app.tailnet.devicejson import device_to_api
from app.tailnet.models import Actor, Device
from app.web.server import make_server
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI
from tests.fakes.slack_payloads import block_suggestion, sign

SIGNING_SECRET = "options-bench-signing-secret-0123456789"
CONFIG_YAML = """
profiles:
  - id: prod
    description: Production access
    attribute: custom:prodAccess
    max_duration: 4h
    approvers: [approver@corp.example.com]
"""
ADMIN = Actor("cli:bench")
TAILNET = "tail4f2c9.ts.net"
DEVICES_PATH = "/api/v2/tailnet/-/devices"
FIRST = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yusuf", "zoe", "ana",
    "bruno", "chen", "dmitri", "elena", "farid", "giulia", "hiro", "ines", "jonas", "kofi", "lena",
]  # fmt: skip
LAST = ["smith", "jones", "garcia", "muller", "rossi", "tanaka", "kim", "nguyen", "ivanova", "okafor"]
LAPTOPS = [
    ("macbook-pro", "macOS"), ("macbook-air", "macOS"), ("thinkpad-x1", "windows"), ("xps-13", "linux"),
    ("framework", "linux"), ("surface", "windows"), ("iphone", "iOS"), ("pixel-8", "android"),
    ("ipad", "iOS"), ("desktop", "windows"),
]  # fmt: skip
SERVERS = [
    ("ip-10-{a}-{b}-{c}", ["tag:aws", "tag:prod"]), ("k8s-node-{n}", ["tag:k8s", "tag:prod"]),
    ("prod-db-{n}", ["tag:prod", "tag:database"]), ("staging-web-{n}", ["tag:staging", "tag:web"]),
    ("gh-runner-{n}", ["tag:ci"]), ("bastion-{n}", ["tag:bastion"]), ("grafana-{n}", ["tag:monitoring"]),
    ("vpn-exit-{n}", ["tag:exit-node"]), ("redis-cache-{n}", ["tag:prod", "tag:cache"]),
]  # fmt: skip
NAIVE_BUDGET = 75.0
"""Seconds the naive baseline may take at most (it stops early, with fewer keystrokes)."""
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


# -- synthetic tailnet --------------------------------------------------------------------------------------


def synthetic_devices(count: int, seed: int = 2026) -> list[Device]:
    """About 55% personal devices of ~count/3 people, the rest tagged servers; unique MagicDNS names."""
    rng = random.Random(seed)
    people = [f"{rng.choice(FIRST)}.{rng.choice(LAST)}{i}@corp.example.com" for i in range(max(1, count // 3))]
    seen: dict[str, int] = {}
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    devices = []
    for i in range(count):
        if rng.random() < 0.55:
            user = rng.choice(people)
            model, os = rng.choice(LAPTOPS)
            label, tags = f"{user.split('.', 1)[0]}-{model}", []
        else:
            user = rng.choice(people[:50])  # tagged devices: user is whoever created them
            pattern, tags = rng.choice(SERVERS)
            label = pattern.format(a=rng.randrange(256), b=rng.randrange(256), c=rng.randrange(256), n=i)
            os = "linux"
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label}-{seen[label] - 1}"
        node_id = "n" + "".join(rng.choice(ALPHABET) for _ in range(10)) + "CNTRL"
        raw = {
            "authorized": True,
            "blocksIncomingConnections": False,
            "created": (now - timedelta(days=rng.randrange(900))).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expires": (now + timedelta(days=rng.randrange(180))).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "isExternal": False,
            "keyExpiryDisabled": bool(tags),
            "machineKey": "mkey:" + f"{rng.getrandbits(256):064x}",
            "nodeKey": "nodekey:" + f"{rng.getrandbits(256):064x}",
            "tailnetLockKey": "tlpub:" + f"{rng.getrandbits(256):064x}",
            "updateAvailable": rng.random() < 0.2,
            "enabledRoutes": [],
            "advertisedRoutes": [],
            "clientConnectivity": {
                "endpoints": [f"203.0.113.{rng.randrange(256)}:41641", f"10.0.{rng.randrange(256)}.2:41641"],
                "mappingVariesByDestIP": False,
                "latency": {"Frankfurt": {"latencyMs": round(rng.uniform(5, 90), 3), "preferred": True}},
                "clientSupports": {"hairPinning": False, "ipv6": False, "pcp": False, "pmp": False, "udp": True},
            },
        }
        devices.append(
            Device(
                id=str(10**15 + rng.randrange(9 * 10**15)),
                node_id=node_id,
                name=f"{label}.{TAILNET}",
                hostname=label,
                user=user,
                os=os,
                tags=tuple(tags),
                addresses=(f"100.{64 + i // 65536 % 64}.{i // 256 % 256}.{i % 256}", f"fd7a:115c:a1e0::{i:x}"),
                last_seen=now - timedelta(minutes=rng.randrange(10_000)),
                serial_numbers=("C02" + "".join(rng.choice(ALPHABET[:24]) for _ in range(9)),),
                client_version="1.76.1-t0e0e0e0e0-g0e0e0e0e0",
                raw=raw,
            )
        )
    return devices


def keystrokes(devices: list[Device], count: int, seed: int = 7) -> list[tuple[str, str]]:
    """(typed text, requester email): people opening the picker and typing a device's name, IP, tag or id."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    while len(out) < count:
        target = rng.choice(devices)
        requester = target.user if rng.random() < 0.6 else rng.choice(devices).user
        roll = rng.random()
        if roll < 0.6:
            text = target.short_name[: rng.randrange(3, 14)]
        elif roll < 0.8:
            text = target.addresses[0][: rng.randrange(4, len(target.addresses[0]) + 1)]
        elif roll < 0.9 and target.tags:
            text = rng.choice(target.tags)
        else:
            text = target.node_id[: rng.randrange(3, 8)]
        out.append(("", requester))  # min_query_length 0: the picker asks as soon as it opens
        out.extend((text[:n], requester) for n in range(1, len(text) + 1))
    return out[:count]


# -- measuring ------------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Run:
    """Latencies (seconds) of one app over one pass of keystrokes."""

    latencies: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


def line(label: str, runs: list[Run]) -> str:
    """``label  n keystrokes  p50 .. p99 ..`` with medians over ``runs``."""
    p50 = statistics.median(run.p50 for run in runs) * 1000
    p99 = statistics.median(run.p99 for run in runs) * 1000
    count = sum(len(run.latencies) for run in runs)
    each = "  ".join(f"{run.p50 * 1000:.2f}/{run.p99 * 1000:.2f}" for run in runs)
    return f"  {label:<40}{count:>6} keystrokes  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms   (rounds p50/p99: {each})"


def client_run(port: int, posts: list[tuple[str, str]]) -> list[tuple[float, dict[str, Any]]]:
    """In the client process: signed posts of (query, user id) over one persistent connection, each timed from
    the request's first byte to the answer's last (signed before the clock starts); one untimed post first."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out: list[tuple[float, dict[str, Any]]] = []
    try:
        for query, user_id in [posts[0], *posts]:
            body = block_suggestion(ActionId.DEVICE_SELECT, BlockId.DEVICE, query, user_id).encode()
            headers = sign(SIGNING_SECRET, body)
            start = time.perf_counter()
            conn.request("POST", "/slack/events", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
            out.append((elapsed, json.loads(data)))
    finally:
        conn.close()
    return out[1:]


class Poster:
    """Posts keystrokes to one app from a client process of its own, as Slack is: the client's CPU time does
    not compete for the server's GIL."""

    def __init__(self, port: int, users: dict[str, str], client: ProcessPoolExecutor) -> None:
        self.port = port
        self.users = users
        self.client = client

    def run(self, queries: list[tuple[str, str]], answers: list[dict[str, Any]] | None = None) -> Run:
        posts = [(query, self.users[requester]) for query, requester in queries]
        results = self.client.submit(client_run, self.port, posts).result()
        for i, (_, answer) in enumerate(results):
            if answers is not None and len(answers) > i and answers[i] != answer:
                raise RuntimeError(f"inline and Bolt answer {queries[i][0]!r} differently")
            if answers is not None and len(answers) == i:
                answers.append(answer)
        return Run([elapsed for elapsed, _ in results])


# -- the app under test ---------------------------------------------------------------------------------------


@contextmanager
def serving(app: Any) -> Iterator[int]:
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def seed(db: Database, devices: list[Device]) -> None:
    """Store the synthetic devices with one executemany (``tailnet import`` does the same rows through the ORM,
    slower) and count the change as the store does."""
    now = datetime.now(UTC)
    rows = [
        {
            **{column: getattr(device, column) for column in ("id", "node_id", "name", "hostname", "user", "os")},
            "client_version": device.client_version,
            "tags": list(device.tags),
            "addresses": list(device.addresses),
            "serial_numbers": list(device.serial_numbers),
            "posture_identity_disabled": device.posture_identity_disabled,
            "last_seen": device.last_seen,
            "created": now,
            "extra": device.raw,
        }
        for device in devices
    ]
    with db.session() as session:
        session.execute(insert(DeviceRow), rows)
        bump_generation(session)


class ListOnly:
    """The tailnet as the index saw it before: ``list_devices`` and nothing else."""

    def __init__(self, inner: BuiltinTailnet) -> None:
        self.inner = inner

    def list_devices(self) -> list[Device]:
        return self.inner.list_devices()


def timed_refresh(index: DeviceIndex) -> float:
    start = time.perf_counter()
    if not index.refresh():
        raise RuntimeError(f"refresh failed: {index.last_error}")
    return time.perf_counter() - start


def refresh_costs(builtin: BuiltinTailnet, index: DeviceIndex) -> None:
    def fetch(listing: Callable[[], Any]) -> float:
        start = time.perf_counter()
        list(listing())
        return time.perf_counter() - start

    before = [fetch(builtin.list_devices) for _ in range(3)]
    after = [fetch(builtin.index_devices) for _ in range(3)]
    old = [timed_refresh(DeviceIndex(ListOnly(builtin))) for _ in range(3)]
    new = [timed_refresh(DeviceIndex(builtin)) for _ in range(3)]
    start = time.perf_counter()
    for _ in range(20):
        index.refresh_if_stale()
    unchanged = (time.perf_counter() - start) / 20
    print("\nrefresh of the index, medians of 3:")
    print(f"  fetch: list_devices (before)            {statistics.median(before):7.2f} s")
    print(f"  fetch: index_devices (now)              {statistics.median(after):7.2f} s")
    print(f"  refresh: list_devices + build (before)  {statistics.median(old):7.2f} s")
    paced = f"rests every {SLICE * 1000:g} ms, no GC"
    print(f"  refresh: paced index_devices + build    {statistics.median(new):7.2f} s ({paced})")
    print(f"  scheduler job, nothing changed          {unchanged * 1000:7.2f} ms (reads the change counter only)")


@contextmanager
def churning(builtin: BuiltinTailnet, index: DeviceIndex, devices: list[Device]) -> Iterator[list[float]]:
    """Back-to-back refreshes: one device changes, the scheduler's job sees the counter move and rebuilds."""
    stop = threading.Event()
    done: list[float] = []

    def job() -> None:
        rng = random.Random(3)
        while not stop.is_set():
            changed = rng.choice(devices)
            item = device_to_api(changed, fields_all=True)
            builtin.import_devices([{**item, "clientVersion": f"1.76.{len(done)}"}], actor=ADMIN)
            start = time.perf_counter()
            if index.refresh_if_stale():
                done.append(time.perf_counter() - start)

    thread = threading.Thread(target=job, name="device-index-job", daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(120)


def while_refreshing(
    inline: Poster, naive: Poster, queries: list[tuple[str, str]], refreshes: int, churn: list[float]
) -> tuple[list[Run], list[Run]]:
    """Rounds of both apps until ``refreshes`` refreshes have run (and at least one round each)."""
    inline_runs: list[Run] = []
    naive_runs: list[Run] = []
    deadline = time.monotonic() + 300
    while (len(churn) < refreshes or not inline_runs) and time.monotonic() < deadline:
        inline_runs.append(inline.run(queries))
        naive_runs.append(naive.run(queries))
    return inline_runs, naive_runs


# -- main ------------------------------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=50_000, help="devices in the tailnet (default 50000)")
    parser.add_argument("--keystrokes", type=int, default=200, help="keystrokes per round (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each app (default 3)")
    parser.add_argument("--refreshes", type=int, default=4, help="refreshes to overlap at least (default 4)")
    args = parser.parse_args()
    if args.devices < 10 or args.keystrokes < 1 or args.rounds < 1 or args.refreshes < 1:
        parser.error("--devices must be at least 10, the other counts at least 1")
    return args


def build_services(tmp: Path, db: Database, builtin: BuiltinTailnet, fake: FakeSlackAPI) -> bootstrap.Services:
    (tmp / "accessbot.yml").write_text(CONFIG_YAML)
    settings = Settings(  # type: ignore[call-arg]
        DATABASE_URL=db.engine.url.render_as_string(hide_password=False),
        ACCESSBOT_CONFIG=str(tmp / "accessbot.yml"),
        SLACK_BOT_TOKEN=DEFAULT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=fake.base_url,
    )
    return bootstrap.build(
        settings,
        db=db,
        tailnet=builtin,
        config=ConfigSource(tmp / "accessbot.yml"),
        slack_client=slack_client(DEFAULT_TOKEN, fake.base_url),
    )


def main() -> None:
    args = arguments()
    started = time.perf_counter()
    devices = synthetic_devices(args.devices)
    queries = keystrokes(devices, args.keystrokes)
    users = {email: f"U{i:07d}" for i, email in enumerate(sorted({r for _, r in queries}))}
    with tempfile.TemporaryDirectory(prefix="accessbot-bench-") as tmp, FakeSlackAPI(token=DEFAULT_TOKEN) as fake:
        db = Database(f"sqlite:///{tmp}/bench.db")
        upgrade(db.engine)
        builtin = BuiltinTailnet(db)
        t0 = time.perf_counter()
        seed(db, devices)
        print(f"built-in tailnet: {len(devices):,} devices stored in {time.perf_counter() - t0:.1f} s (SQLite)")
        print(f"keystrokes: e.g. {', '.join(repr(q) for q, _ in queries[:10])}, ...")
        for email, user_id in users.items():
            fake.add_user(user_id, email, email.split("@", 1)[0])
        services = build_services(Path(tmp), db, builtin, fake)
        ctx = services.slack
        ctx.devices.refresh()
        ctx.directory.warm()  # as ``accessbot serve`` does at start
        bolt_app = services.bolt_app()
        inline_app = services.slack_wsgi(bolt_app)
        naive_app = services.ops(
            events_app(bolt_app, signing_secret=SIGNING_SECRET), name="slack", health=services.health(devices=True)
        )
        with serving(inline_app) as inline_port, serving(naive_app) as naive_port:
            client = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            inline, naive = Poster(inline_port, users, client), Poster(naive_port, users, client)
            answers: list[dict[str, Any]] = []
            naive.run(queries[:20], answers)  # warm both (Bolt's auth.test, connections)
            inline.run(queries[:20], answers)
            answers.clear()
            inline_runs, naive_runs = [], []
            for _ in range(args.rounds):
                inline_runs.append(inline.run(queries, answers))
                naive_runs.append(naive.run(queries, answers))
            print(f"\noptions answer through the HTTP app, {args.rounds} rounds, medians (answers identical):")
            print(line("inline (the gate answers)", inline_runs))
            print(line("naive (Bolt's listener and ack poll)", naive_runs))
            refresh_costs(builtin, ctx.devices)
            with churning(builtin, ctx.devices, devices) as churn:
                busy_inline, busy_naive = while_refreshing(inline, naive, queries, args.refreshes, churn)
            took = ", ".join(f"{t:.2f}" for t in churn)
            print(f"\nwhile the index refreshes back to back ({len(churn)} refreshes: {took} s):")
            print(line("inline", busy_inline))
            print(line("naive", busy_naive))
            client.shutdown()
        services.db.dispose()
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
