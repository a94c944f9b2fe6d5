"""Benchmark the built-in tailnet's attribute reads and writes.

    python bench/attributes.py [--database-url URL] [--devices 1000] [--ops 5000]

Always runs on a fresh temporary SQLite database; with ``--database-url`` (PostgreSQL) also there, in a
schema of its own that is dropped afterwards. Per backend it measures:

* ``set_attribute`` and ``get_attributes`` on random devices: ops/s and p50/p99 latency per op;
* setting one attribute on every device, naively (one ``set_attribute`` transaction per device) against
  ``set_many`` (one transaction for all, and batches of 100), with the speed-up ratio.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchdb import postgres_database, sqlite_database

from app.db import Database
from app.db.session import normalize_url
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, AttributeChanges, AttributeWrite

ACTOR = Actor("cli:bench")
KEYS = [f"custom:bench{i}" for i in range(8)]
BATCH = 100


@dataclass(frozen=True)
class Timing:
    """Latencies (seconds) of a run of single operations."""

    latencies: list[float]

    @property
    def ops_per_second(self) -> float:
        return len(self.latencies) / sum(self.latencies)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def line(self, label: str) -> str:
        return (
            f"  {label:<28}{len(self.latencies):>7} ops {self.ops_per_second:>10,.0f} ops/s   "
            f"p50 {self.percentile(50) * 1000:7.2f} ms   p99 {self.percentile(99) * 1000:7.2f} ms"
        )


def timed(operation: Callable[..., object], calls: list[tuple[object, ...]]) -> Timing:
    """Call ``operation(*args)`` for each argument tuple, timing each call alone."""
    latencies = []
    for args in calls:
        start = time.perf_counter()
        operation(*args)
        latencies.append(time.perf_counter() - start)
    return Timing(latencies)


def seconds(operation: Callable[[], object]) -> float:
    start = time.perf_counter()
    operation()
    return time.perf_counter() - start


def device_json(i: int) -> dict[str, object]:
    return {
        "id": str(10**15 + i),
        "nodeId": f"nBENCH{i:06d}CNTRL",
        "name": f"device-{i}.tail1234.ts.net",
        "hostname": f"device-{i}",
        "user": f"user{i % 97}@example.com",
        "os": "linux",
        "postureIdentity": {"serialNumbers": [f"SN{i:08d}"], "disabled": False},
    }


def bench(label: str, db: Database, devices: int, ops: int) -> None:
    tailnet = BuiltinTailnet(db)
    rng = random.Random(1234)
    start = time.perf_counter()
    tailnet.import_devices([device_json(i) for i in range(devices)], actor=ACTOR)
    ids = [str(10**15 + i) for i in range(devices)]
    print(f"\n{label}: {devices} devices imported in {time.perf_counter() - start:.2f} s")

    for device_id in ids[:20]:  # warm up connections and statement caches
        tailnet.set_attribute(device_id, KEYS[0], 0, actor=ACTOR)
        tailnet.get_attributes(device_id)

    def set_one(device_id: str, key: str, value: int) -> None:
        tailnet.set_attribute(device_id, key, value, actor=ACTOR)

    sets = timed(set_one, [(rng.choice(ids), rng.choice(KEYS), rng.randrange(10**6)) for _ in range(ops)])
    print(sets.line("set_attribute (random)"))
    gets = timed(tailnet.get_attributes, [(rng.choice(ids),) for _ in range(ops)])
    print(gets.line("get_attributes (random)"))

    naive = seconds(lambda: [tailnet.set_attribute(d, "custom:naive", True, actor=ACTOR) for d in ids])
    one: AttributeChanges = {d: {"custom:batched": AttributeWrite(True)} for d in ids}
    batched = seconds(lambda: tailnet.set_many(one, actor=ACTOR))
    chunks = [
        {d: {"custom:chunked": AttributeWrite(True)} for d in ids[i : i + BATCH]} for i in range(0, devices, BATCH)
    ]
    chunked = seconds(lambda: [tailnet.set_many(chunk, actor=ACTOR) for chunk in chunks])
    for key in ("custom:naive", "custom:batched", "custom:chunked"):
        assert all(tailnet.get_attributes(d).attributes.get(key) is True for d in rng.sample(ids, 20)), key

    print(f"  one attribute on all {devices} devices:")
    for name, took in (
        (f"naive, {devices} x set_attribute", naive),
        ("set_many, 1 transaction", batched),
        (f"set_many, batches of {BATCH}", chunked),
    ):
        print(f"    {name:<32}{took:8.2f} s {devices / took:>10,.0f} attrs/s")
    print(f"    speed-up: set_many {naive / batched:.1f}x, batches of {BATCH} {naive / chunked:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="also run on this PostgreSQL database (in a throwaway schema)")
    parser.add_argument("--devices", type=int, default=1000, help="devices in the tailnet (default 1000)")
    parser.add_argument("--ops", type=int, default=5000, help="random sets and gets each (default 5000)")
    args = parser.parse_args()
    if args.devices < 20 or args.ops < 1:
        parser.error("--devices must be at least 20 and --ops at least 1")

    started = time.perf_counter()
    with sqlite_database() as db:
        bench("SQLite (temporary file)", db, args.devices, args.ops)
    if args.database_url:
        if not normalize_url(args.database_url).startswith("postgresql"):
            parser.error("--database-url must be a PostgreSQL URL")
        with postgres_database(args.database_url) as db:
            bench("PostgreSQL (throwaway schema)", db, args.devices, args.ops)
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
