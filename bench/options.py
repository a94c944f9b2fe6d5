"""Benchmark the device picker's options answer: in-memory index against a full fetch per keystroke.

    python bench/options.py [--devices 50000] [--keystrokes 200] [--naive-keystrokes 30]

Builds a synthetic tailnet (realistic names, owners, tags, IPv4/IPv6 addresses) and a sequence of
keystrokes (people typing device names, IPs, tags and ids letter by letter), then measures:

* indexed: ``DeviceIndex.search`` + ``device_option_groups`` + ``json.dumps`` per keystroke, index built
  once (also while a background rebuild is running, to show GIL contention);
* naive (what Tailscale's bot does): per keystroke ``GET /api/v2/tailnet/-/devices?fields=all`` from a
  loopback fake of the Tailscale API with httpx, parse, substring filter, 80 own + 20 other options;
* the index's build time (from Device objects and over HTTP) and memory.

The naive run stops after 75 s even if it has not done ``--naive-keystrokes`` yet.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.slack.device_index import DeviceIndex, DeviceMatches
from app.slack.views.device_options import device_option_groups
from app.tailnet.devicejson import device_from_api, device_to_api
from app.tailnet.models import Device

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


@dataclass(frozen=True)
class Timing:
    """Latencies (seconds) of single requests."""

    latencies: list[float]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def line(self, label: str) -> str:
        return (
            f"  {label:<46}{len(self.latencies):>5} keystrokes   "
            f"p50 {self.percentile(50) * 1000:9.3f} ms   p99 {self.percentile(99) * 1000:9.3f} ms"
        )


def timed(answer: Callable[[str, str], object], queries: list[tuple[str, str]], budget: float = float("inf")) -> Timing:
    """Time each answer; stop early once ``budget`` seconds have been spent."""
    latencies: list[float] = []
    for query, requester in queries:
        start = time.perf_counter()
        answer(query, requester)
        latencies.append(time.perf_counter() - start)
        if sum(latencies) >= budget:
            break
    return Timing(latencies)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the loopback Tailscale API -----------------------------------------------------------------------------


@contextmanager
def fake_tailscale_api(body: bytes) -> Iterator[str]:
    """``GET /api/v2/tailnet/-/devices`` on 127.0.0.1 answering ``body``; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != DEVICES_PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class HttpDevices:
    """A device source over the loopback API, as the Tailscale adapter would fetch it."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def list_devices(self) -> list[Device]:
        response = self.client.get(DEVICES_PATH, params={"fields": "all"})
        response.raise_for_status()
        return [device_from_api(item) for item in response.json()["devices"]]


def naive_answer(client: httpx.Client) -> Callable[[str, str], str]:
    """Tailscale's bot: fetch every device per keystroke, substring filter, 80 own + 20 others."""

    def answer(query: str, requester: str) -> str:
        response = client.get(DEVICES_PATH, params={"fields": "all"})
        response.raise_for_status()
        q = query.strip().casefold()
        me = requester.casefold()
        mine: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        for item in sorted(response.json()["devices"], key=lambda d: d["name"]):
            fields = [item["name"], item["hostname"], *item.get("addresses", ()), *item.get("tags", ())]
            if q and not any(q in field.casefold() for field in fields):
                continue
            (mine if item["user"].casefold() == me else others).append(item)
        matches = DeviceMatches(
            mine=[device_from_api(item) for item in mine[:80]],
            others=[device_from_api(item) for item in others[:20]],
        )
        return json.dumps(device_option_groups(matches))

    return answer


def indexed_answer(index: DeviceIndex) -> Callable[[str, str], str]:
    def answer(query: str, requester: str) -> str:  # as the options listener: memory only
        return json.dumps(device_option_groups(index.search(query, owner_email=requester)))

    return answer


class StaticSource:
    """Returns the same device list every time."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices

    def list_devices(self) -> list[Device]:
        return self.devices


class ChurningSource:
    """Returns the device list with one more changed device each call, so every refresh rebuilds."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        self.calls = 0

    def list_devices(self) -> list[Device]:
        self.calls += 1
        changed = list(self.devices)
        changed[self.calls % len(changed)] = replace(changed[self.calls % len(changed)], os=f"v{self.calls}")
        return changed


# -- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=50_000, help="devices in the tailnet (default 50000)")
    parser.add_argument("--keystrokes", type=int, default=200, help="keystrokes for the index (default 200)")
    parser.add_argument(
        "--naive-keystrokes", type=int, default=30, help="keystrokes for the naive baseline (default 30)"
    )
    args = parser.parse_args()
    if args.devices < 10 or args.keystrokes < 1 or args.naive_keystrokes < 1:
        parser.error("--devices must be at least 10, keystroke counts at least 1")
    started = time.perf_counter()

    t0 = time.perf_counter()
    devices = synthetic_devices(args.devices)
    queries = keystrokes(devices, max(args.keystrokes, args.naive_keystrokes))
    body = json.dumps({"devices": [device_to_api(d, fields_all=True) for d in devices]}).encode()
    owners = len({d.user for d in devices})
    tagged = sum(1 for d in devices if d.tags)
    print(
        f"synthetic tailnet: {len(devices):,} devices ({tagged:,} tagged, {owners:,} owners), "
        f"API response {len(body) / 2**20:.1f} MiB, made in {time.perf_counter() - t0:.1f} s"
    )
    print(f"keystrokes: e.g. {', '.join(repr(q) for q, _ in queries[:12])}, ...")

    # Index build: time without tracing, then memory of the snapshot with tracemalloc.
    source = StaticSource(devices)
    index = DeviceIndex(source)
    gc.collect()
    rss_before = rss_mib()
    t0 = time.perf_counter()
    index.refresh()
    build = time.perf_counter() - t0
    rss_after = rss_mib()
    source.devices = [replace(d) for d in devices]  # equal but new objects, as a fresh fetch gives
    t0 = time.perf_counter()
    index.refresh()
    unchanged = time.perf_counter() - t0
    tracemalloc.start()
    traced = DeviceIndex(StaticSource(devices))
    traced.refresh()
    index_bytes, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del traced
    print("\nindex:")
    print(f"  build from {len(devices):,} Device objects        {build * 1000:9.1f} ms")
    print(f"  refresh with an unchanged list (no rebuild)  {unchanged * 1000:9.1f} ms")
    print(
        f"  memory of the index structures             {index_bytes / 2**20:9.1f} MiB (tracemalloc), "
        f"RSS +{rss_after - rss_before:.1f} MiB"
    )

    indexed = timed(indexed_answer(index), queries[: args.keystrokes])
    hits = [len(index.search(q, owner_email=r)) for q, r in queries[: args.keystrokes]]
    print("\noptions answer = search + device_option_groups + json.dumps:")
    print(indexed.line("indexed (in-process)"))
    print(f"  {'':<46}options per answer: median {sorted(hits)[len(hits) // 2]}, max {max(hits)}")

    churning = ChurningSource(devices)
    churn = DeviceIndex(churning, max_age=timedelta(0))
    churn.refresh()
    stop = threading.Event()

    def refresh_job() -> None:  # the scheduler's device-index job, run back to back: a rebuild at every call
        while not stop.is_set():
            churn.refresh_if_stale()

    refresher = threading.Thread(target=refresh_job, name="device-index-job", daemon=True)
    refresher.start()
    busy = timed(indexed_answer(churn), queries[: args.keystrokes])
    stop.set()
    refresher.join(60)
    rebuilds = churning.calls - 1
    print(busy.line(f"indexed, rebuilding in background ({rebuilds}x)"))

    with fake_tailscale_api(body) as base, httpx.Client(base_url=base, timeout=60) as client:
        http_index = DeviceIndex(HttpDevices(client))
        t0 = time.perf_counter()
        http_index.refresh()
        http_build = time.perf_counter() - t0
        naive = timed(naive_answer(client), queries[: args.naive_keystrokes], budget=NAIVE_BUDGET)
    print(naive.line("naive: GET all devices + filter (loopback)"))
    print(
        f"\nratio naive/indexed: p50 {naive.percentile(50) / indexed.percentile(50):,.0f}x, "
        f"p99 {naive.percentile(99) / indexed.percentile(99):,.0f}x"
    )
    print(f"background refresh over loopback HTTP (fetch + parse + build): {http_build:.2f} s")
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
