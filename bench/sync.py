"""Benchmark the EDR posture sync end to end: loopback vendor fakes → SyncRunner → built-in tailnet.

    python bench/sync.py [--vendor NAME ...|all] [--agents 50000] [--devices 50000] [--database-url URL] [--profile]

Builds a temporary SQLite database (with ``--database-url``: a throwaway schema in that PostgreSQL database,
dropped afterwards), migrates it and imports ``--devices`` devices with ``import_devices``. Most of their serial
numbers (about 90 %) belong to an agent; the others have a serial no EDR knows, none, a firmware placeholder,
or posture identity turned off. Each vendor chosen with ``--vendor`` (repeatable, or ``all``; default Huntress
and SentinelOne) serves ``--agents`` agents over HTTP on 127.0.0.1 from its loopback fake in ``tests/fakes``, in
the vendor's own JSON shape (``bench/sync_vendors.py``), with about 1 % null serials, 0.5 % placeholder serials,
1 % reinstalls (a second agent with the serial of another) and a realistic spread of values. The fakes of
CrowdStrike, Intune and Kandji enforce the vendor's documented rate limit, the others none; every client keeps
its production self rate limit except Huntress's (60 a minute), which the bench relaxes and says so. Then, per
vendor, ``SyncRunner.run`` three times:

* first: every attribute is new;
* again: nothing changed, so nothing may be written;
* changed: ``--change`` of the agents (1 %) report different values and ``--remove`` (0.1 %) are uninstalled.

Per run it prints the wall time, the CPU time of the main thread (the sync's own work: the fakes serve on
other threads, so it suffers less than the wall time from a busy machine), the requests the fake received,
agents, matches, attribute sets and deletes, the tailnet write calls (``set_many`` batches) against the calls a
one-request-per-attribute sync would make (the naive baseline) and their ratio, peak RSS (``ru_maxrss``),
current RSS and, on Linux, how far the sync's own peak rose above the RSS it started with (``VmHWM`` reset
before each run), and where the time went: fetching agents, listing devices, reading current values, writing,
and the rest (matching, diffing, bookkeeping); the devices and current values are read alongside the fetch. A
last line gives the CPU the sync's process used on all its threads and, with the fake in a process of its own,
the fake's CPU: where the fake needs about the run's wall time, the run is bound by the fake on this machine.
``--profile`` also runs the first ``import_devices`` call and each first sync under ``cProfile`` and prints their
hottest functions (main thread only; profiling slows them down, so their times are not comparable).
``--fetch-only`` times each vendor's ``fetch_agents`` alone instead (three rounds, no database): the CPU of
reading the vendor's pages, the floor of a re-sync on a machine that runs the sync's threads one at a time.

Garbage collection: the bench's own fixtures (the devices it imported, each vendor's generated records, kept
for the "changed" run) are moved out of the collector's sight with ``gc.freeze()`` once built. A production
process holds none of them, and CPython's full collections walk every tracked object: left in sight they made
each full collection during a sync several times dearer than in ``accessbot sync``.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import json
import os
import pstats
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Collection
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchdb import child_url, postgres_database, sqlite_database
from fake_process import FakeProcess, add_latency
from sync_vendors import VENDORS, VendorBench

from app.core.crypto import Cipher
from app.core.gc_pause import fewer_full_collections
from app.db import Database
from app.db.session import normalize_url
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.builtin_sync import SyncDevice
from app.tailnet.models import Actor, AttributeChanges, AttributeValue, Device
from app.vendors import huntress, registry, sentinelone
from app.vendors._http import SlidingWindowLimiter
from app.vendors.base import Agent, Progress, VendorClient, VendorSpec
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode, map_key
from app.vendors.registry import VendorRegistry
from app.vendors.sync import SyncReport, SyncRunner
from tests.fakes.vendors import default_serial

T = TypeVar("T")
Json = dict[str, Any]
DEFAULT_VENDORS = ("huntress", "sentinelone")
ORDER = tuple(spec.id for spec in registry.VENDORS)
"""Vendors in the order they run: the registry's."""
ACTOR = Actor("cli:bench")
IMPORT_CHUNK = 5000
FETCH_ROUNDS = 3
PLACEHOLDERS = ("To Be Filled By O.E.M.", "System Serial Number", "Default string", "0")
MIB = 1024  # ru_maxrss is in KiB on Linux
BENCH_PASSPHRASE = "accessbot benchmark passphrase"
CHILD_WITH_PEAK = (
    "import atexit, pathlib, runpy, sys\n"
    "atexit.register(lambda: sys.stderr.write(next(l for l in pathlib.Path('/proc/self/status').read_text()"
    ".splitlines() if l.startswith('VmHWM')) + '\\n'))\n"
    "sys.argv[0] = 'accessbot'\n"
    "runpy.run_module('app', run_name='__main__', alter_sys=True)\n"
)
"""``python -m app`` that prints its peak RSS (``VmHWM``) on stderr at exit: the RSS a process's rusage reports
after ``exec`` still counts the parent's pages (Linux keeps the pre-exec high-water mark)."""


# -- measuring ----------------------------------------------------------------------------------------------


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kib() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset this process's peak RSS (Linux: ``VmHWM``), so a sync's own peak can be read afterwards."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory() -> str:
    now = current_rss_kib()
    shown = f"{now / MIB:,.0f} MiB" if now is not None else "n/a"
    return f"RSS now {shown:>9}, peak {peak_rss_kib() / MIB:,.0f} MiB"


class Stopwatch:
    """Seconds spent per named part of a sync (reset before each run)."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = defaultdict(float)

    def reset(self) -> None:
        self.parts.clear()

    def time(self, part: str, call: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return call()
        finally:
            self.parts[part] += time.perf_counter() - start


class TimedTailnet:
    """The built-in tailnet, with the calls the sync makes timed (everything else passes through)."""

    def __init__(self, inner: BuiltinTailnet, watch: Stopwatch) -> None:
        self._inner = inner
        self._watch = watch
        self.max_batch_devices = inner.max_batch_devices

    def list_devices(self) -> list[Device]:
        return self._watch.time("list devices", self._inner.list_devices)

    def sync_devices(self) -> list[SyncDevice]:
        return self._watch.time("list devices", self._inner.sync_devices)

    def attributes_with_keys(
        self, keys: Collection[str], *, prefixes: Collection[str] = ()
    ) -> dict[str, dict[str, AttributeValue]]:
        return self._watch.time("read current", lambda: self._inner.attributes_with_keys(keys, prefixes=prefixes))

    def set_many(self, changes: AttributeChanges, *, actor: Actor, comment: str | None = None) -> None:
        self._watch.time("write", lambda: self._inner.set_many(changes, actor=actor, comment=comment))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedClient:
    """A vendor client whose ``fetch_agents`` (HTTP paging and parsing) is timed."""

    def __init__(self, inner: VendorClient, watch: Stopwatch) -> None:
        self._inner = inner
        self._watch = watch

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        return self._watch.time("fetch agents", lambda: self._inner.fetch_agents(progress))

    def close(self) -> None:
        self._inner.close()


# -- synthetic fleet ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Fleet:
    """The serial plan of the agents and the devices of the tailnet, built from one seed; agents per vendor."""

    serials: list[str | None]
    primaries: int
    devices: list[dict[str, Any]]
    device_mix: dict[str, int]
    agent_mix: dict[str, int]
    seed: int
    made: dict[str, list[Json]]
    """Agents already generated (Huntress and SentinelOne, from the main seed), taken by ``agents``."""

    def agents(self, vendor: str) -> list[Json]:
        """The agents of ``vendor`` in its own JSON shape: the common serial plan, values from its own seed."""
        made = self.made.pop(vendor, None)
        if made is not None:
            return made
        rng = random.Random(f"{self.seed}-{vendor}")
        make = VENDORS[vendor].make
        return [make(i, s, i >= self.primaries, rng) for i, s in enumerate(self.serials)]


def agent_serials(count: int, rng: random.Random) -> tuple[list[str | None], dict[str, int]]:
    """Serial per agent: mostly ``default_serial(i)``; some null, some placeholders, 1 % reinstalls at the end."""
    reinstalls = count // 100
    primaries = count - reinstalls
    serials: list[str | None] = []
    mix = {"own serial": 0, "null serial": 0, "placeholder serial": 0, "reinstall (duplicate serial)": reinstalls}
    for i in range(primaries):
        roll = rng.random()
        if roll < 0.01:
            serials.append(None)
            mix["null serial"] += 1
        elif roll < 0.015:
            serials.append(rng.choice(PLACEHOLDERS))
            mix["placeholder serial"] += 1
        else:
            serials.append(default_serial(i))
            mix["own serial"] += 1
    serials.extend(default_serial(rng.randrange(primaries)) for _ in range(reinstalls))
    return serials, mix


def device_json(j: int, serials: list[str] | None) -> dict[str, Any]:
    """A device as ``GET /tailnet/-/devices?fields=all`` lists it; ``serials=None``: posture identity off."""
    identity: dict[str, Any] = {"disabled": True} if serials is None else {"serialNumbers": serials, "disabled": False}
    return {
        "id": str(10**15 + j),
        "nodeId": f"nBENCH{j:07d}CNTRL",
        "name": f"host-{j:05d}.tail4f2c9.ts.net",
        "hostname": f"host-{j:05d}",
        "user": f"user{j % 9973}@corp.example.com",
        "os": "windows",
        "addresses": [f"100.{64 + (j >> 16) % 64}.{(j >> 8) & 255}.{j & 255}"],
        "clientVersion": "1.76.1-t1234abcd",
        "postureIdentity": identity,
    }


def device_serials(j: int, primaries: int, rng: random.Random) -> tuple[str, list[str] | None]:
    """(kind, serials) of device ``j``: ~90 % carry agent ``j``'s serial, the rest do not match any agent."""
    roll = rng.random()
    if roll < 0.90 and j < primaries:
        serial = default_serial(j)
        shape = rng.random()
        if shape < 0.10:
            serial = serial.lower()  # matching is case-insensitive
        elif shape < 0.15:
            serial = f" {serial} "  # and ignores surrounding blanks
        if rng.random() < 0.10:  # a second identifier (baseboard) that no EDR reports
            return "agent serial (+ baseboard)", [f"BB{j:08d}", serial]
        return "agent serial", [serial]
    if roll < 0.95:
        return "serial no agent has", [f"TS{j:07d}"]
    if roll < 0.97:
        return "no serial", []
    if roll < 0.99:
        return "placeholder serial", [rng.choice(PLACEHOLDERS)]
    return "posture identity disabled", None


def build_fleet(agents: int, devices: int, vendors: Collection[str], seed: int = 2026) -> Fleet:
    """Serials, Huntress's and SentinelOne's agents and the devices from one random stream (so the devices are
    the same whichever vendors run: both vendors' agents are always generated, and kept only if chosen)."""
    rng = random.Random(seed)
    serials, agent_mix = agent_serials(agents, rng)
    primaries = agents - agents // 100
    made: dict[str, list[Json]] = {}
    for vendor in DEFAULT_VENDORS:
        make = VENDORS[vendor].make
        records = [make(i, s, i >= primaries, rng) for i, s in enumerate(serials)]
        if vendor in vendors:
            made[vendor] = records
    if "sentinelone" in made:
        agent_mix["SentinelOne decommissioned (not served)"] = sum(
            1 for a in made["sentinelone"] if a["isDecommissioned"]
        )
    device_mix: dict[str, int] = defaultdict(int)
    rows = []
    for j in range(devices):
        kind, device_serial = device_serials(j, primaries, rng)
        device_mix[kind] += 1
        rows.append(device_json(j, device_serial))
    return Fleet(serials, primaries, rows, dict(device_mix), agent_mix, seed, made)


def changed_agents(
    agents: list[Json], bench: VendorBench, change: float, remove: float, rng: random.Random
) -> tuple[list[Json], int, int]:
    """A copy of ``agents`` with ``change`` of them reporting new values and ``remove`` of them gone."""
    count = len(agents)
    picked = rng.sample(range(count), min(count, round(count * (change + remove))))
    n_changed = min(len(picked), round(count * change))
    to_change, to_remove = set(picked[:n_changed]), set(picked[n_changed:])
    out = []
    for n, agent in enumerate(agents):
        if n in to_remove:
            continue
        out.append(bench.change(agent) if n in to_change else agent)
    return out, len(to_change), len(to_remove)


# -- vendor specs: production clients, timed; Huntress's limiter relaxed ------------------------------------------


def bench_specs(watch: Stopwatch) -> VendorRegistry:
    """Every registered spec with its client's ``fetch_agents`` timed. Huntress's client may start 10**6 requests
    a minute (its fake does not rate-limit; production's 60 a minute would make 100 pages take 100 s); every other
    client is built by its production ``build`` and keeps its own self rate limit (Kandji 50 a second,
    CrowdStrike 6000 a minute, Intune 2000 per 20 s)."""

    def build_huntress(values: Any) -> TimedClient:
        client = huntress.HuntressClient(
            values["api_key"],
            values["api_secret"],
            base_url=values["base_url"],
            organization_id=values.get("organization_id"),
            limiter=SlidingWindowLimiter(10**6, 60),
        )
        return TimedClient(client, watch)

    def build_s1(values: Any) -> TimedClient:
        return TimedClient(sentinelone.SentinelOneClient(values["url"], values["api_token"]), watch)

    def timed(spec: VendorSpec) -> VendorSpec:
        build = spec.build
        return dataclasses.replace(spec, build=lambda values: TimedClient(build(values), watch))

    builds = {"huntress": build_huntress, "sentinelone": build_s1}
    return VendorRegistry(
        dataclasses.replace(spec, build=builds[spec.id]) if spec.id in builds else timed(spec)
        for spec in registry.VENDORS
    )


# -- running -----------------------------------------------------------------------------------------------------

HEADER = (
    f"  {'run':<9}{'wall s':>8}{'cpu s':>7}{'requests':>10}{'agents':>8}{'matches':>9}{'sets':>9}{'deletes':>9}"
    f"{'writes':>8}{'naive':>9}{'ratio':>8}   memory"
)


def report_line(phase: str, took: float, cpu: float, requests: int, report: SyncReport, grew: str) -> str:
    """One run: wall and main-thread CPU seconds (the fakes serve on other threads), counts, memory."""
    ratio = f"{report.naive_write_calls / report.write_calls:,.0f}x" if report.write_calls else "-"
    return (
        f"  {phase:<9}{took:>8.2f}{cpu:>7.2f}{requests:>10,}{report.agents:>8,}{report.matches:>9,}{report.sets:>9,}"
        f"{report.deletes:>9,}{report.write_calls:>8,}{report.naive_write_calls:>9,}{ratio:>8}   {memory()}{grew}"
    )


def breakdown(watch: Stopwatch, took: float) -> str:
    """Where the time went; the devices and current values are read alongside the fetch (``SyncRunner._sync``)."""
    parts = dict(watch.parts)
    fetch, write = parts.get("fetch agents", 0.0), parts.get("write", 0.0)
    devices, current = parts.get("list devices", 0.0), parts.get("read current", 0.0)
    rest = max(0.0, took - max(fetch, devices + current) - write)
    return (
        f"  {'':<9}time: fetch agents {fetch:.2f} s (alongside it: list devices {devices:.2f} s, read current "
        f"{current:.2f} s), write {write:.2f} s, match, diff, bookkeeping {rest:.2f} s"
    )


def cpu_line(process_cpu: float, fake_cpu: float | None) -> str:
    """The CPU the sync used on all its threads (HTTP paging, reads and the main thread's work) and, with the fake
    in its own process, the fake's: on two cores a run whose fake needs about its wall time is bound by the fake."""
    fake = f", the fake's process {fake_cpu:.2f} s" if fake_cpu is not None else " (the fake serves in this process)"
    return f"  {'':<9}cpu: the sync's process {process_cpu:.2f} s on all threads{fake}"


def profiled(call: Callable[[], T], top: int) -> T:
    profiler = cProfile.Profile()
    result = profiler.runcall(call)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    keep = [line for line in out.getvalue().splitlines() if line.strip() and not line.startswith("   Ordered by")]
    print("\n".join("      " + line for line in keep))
    return result


class Bench:
    def __init__(self, db: Database, args: argparse.Namespace) -> None:
        self.db = db
        self.args = args
        self.watch = Stopwatch()
        self.builtin = BuiltinTailnet(db)
        self.tailnet = TimedTailnet(self.builtin, self.watch)
        self.integrations = Integrations(db, Cipher.from_secret(BENCH_PASSPHRASE), vendors=bench_specs(self.watch))
        self.runner = SyncRunner(db, self.tailnet, self.integrations, mode=NamespaceMode.VENDOR)  # type: ignore[arg-type]
        self.failures: list[str] = []

    def import_devices(self, devices: list[dict[str, Any]]) -> None:
        start = time.perf_counter()
        created = 0
        first_chunk = 0.0
        for offset in range(0, len(devices), IMPORT_CHUNK):
            chunk = devices[offset : offset + IMPORT_CHUNK]
            chunk_start = time.perf_counter()
            if offset == 0 and self.args.profile:
                print(f"  cProfile of the first import_devices call ({len(chunk):,} devices):")
                created += profiled(partial(self.builtin.import_devices, chunk, actor=ACTOR), self.args.profile_top)[0]
            else:
                created += self.builtin.import_devices(chunk, actor=ACTOR)[0]
            if offset == 0:
                first_chunk = time.perf_counter() - chunk_start
        took = time.perf_counter() - start
        chunks = -(-len(devices) // IMPORT_CHUNK)
        print(
            f"  imported {created:,} devices in {chunks} import_devices calls: {took:.2f} s "
            f"({created / took:,.0f} devices/s; first call {first_chunk:.2f} s)   {memory()}"
        )

    def sync(self, vendor: str, phase: str, fake: Any, profile: bool) -> SyncReport:
        self.watch.reset()
        before = fake.requests
        rss_before = status_kib("VmRSS") if reset_peak() else None
        start = time.perf_counter()
        cpu_start = time.thread_time()
        process_start = time.process_time()
        fake_start = fake.cpu_seconds if isinstance(fake, FakeProcess) else None
        if profile:
            print(f"  {phase}: cProfile of the main thread (fakes serve in their own threads); * = slowed by cProfile:")
            report = profiled(lambda: self.runner.run(vendor), self.args.profile_top)
        else:
            report = self.runner.run(vendor)
        took = time.perf_counter() - start
        cpu = time.thread_time() - cpu_start
        process_cpu = time.process_time() - process_start
        fake_cpu = fake.cpu_seconds - fake_start if fake_start is not None else None
        peak = status_kib("VmHWM")
        grew = f"; sync peak +{max(0, peak - rss_before) / MIB:,.0f} MiB" if rss_before and peak else ""
        if report.result != "ok":
            raise SystemExit(f"{vendor} {phase} sync failed: {report.result}: {report.error}")
        print(report_line(f"{phase}*" if profile else phase, took, cpu, fake.requests - before, report, grew))
        print(breakdown(self.watch, took))
        print(cpu_line(process_cpu, fake_cpu))
        return report

    def held_by(self, spec: VendorSpec) -> int:
        owned = {map_key(a.key, NamespaceMode.VENDOR) for a in spec.attributes}
        return len(self.builtin.attributes_with_keys(owned))

    def vendor(self, vendor: str, agents: list[Json]) -> None:
        """Serve ``agents`` from the vendor's fake and run the three syncs (and, if asked, the own-process one)."""
        bench = VENDORS[vendor]
        opened = bench.open_fake(agents) if self.args.fakes_in_process else FakeProcess(vendor, agents)
        with opened as fake:
            if self.args.latency:
                if isinstance(fake, FakeProcess):
                    fake.add_latency(self.args.latency / 1000)
                else:
                    add_latency(fake, self.args.latency / 1000)
            self.vendor_runs(vendor, bench, fake, agents)

    def vendor_runs(self, vendor: str, bench: VendorBench, fake: Any, agents: list[Json]) -> None:
        spec = self.integrations.vendors.vendor(vendor)
        print(f"\n{spec.label}: {len(agents):,} agents served from {fake.url}")
        print(f"  {'':<9}rate limits: {bench.limits}")
        self.integrations.add(vendor, bench.values(fake), actor="cli:bench")
        print(HEADER)
        first = self.sync(vendor, "first", fake, "first" in self.args.profile_runs)
        held = self.held_by(spec)
        if held != first.matches:
            self.failures.append(f"{spec.label}: {first.matches} matches but {held} devices hold its attributes")
        again = self.sync(vendor, "again", fake, "again" in self.args.profile_runs)
        if (again.sets, again.deletes, again.write_calls) != (0, 0, 0):
            self.failures.append(f"{spec.label}: the unchanged sync wrote {again.sets} sets, {again.deletes} deletes")
        rng = random.Random(f"{vendor}-change")
        changed, n_changed, n_removed = changed_agents(agents, bench, self.args.change, self.args.remove, rng)
        if isinstance(fake, FakeProcess):
            fake.serve(changed)
        else:
            bench.serve(fake, changed)
        third = self.sync(vendor, "changed", fake, "changed" in self.args.profile_runs)
        print(
            f"  {'':<9}({n_changed:,} agents changed values, {n_removed:,} uninstalled; "
            f"{third.devices_changed:,} devices changed; {held:,} devices held {spec.label} attributes after 'first')"
        )
        print(
            f"  {'':<9}summary: {third.summary}; {third.agents_without_serial:,} agents without serial, "
            f"{third.duplicate_serials_resolved:,} duplicate serials resolved, "
            f"{third.devices_without_identity:,} devices without identity"
        )
        refused = getattr(fake, "rate_limited", 0)
        if refused:
            print(f"  {'':<9}the fake answered {refused:,} requests with 429 (over the vendor's rate limit)")
        if self.args.own_process == vendor:
            self.own_process(vendor, spec, third)

    def own_process(self, vendor: str, spec: VendorSpec, last: SyncReport) -> None:
        """A first sync as production runs it: ``accessbot sync VENDOR`` in a process of its own (the CLI's real
        vendor client and wiring), after the vendor's attributes were cleared; its peak RSS is the process's."""
        cleared = self.runner.clear(vendor)
        env = {
            **os.environ,
            "DATABASE_URL": child_url(self.db),
            "ACCESSBOT_SECRET_KEY": BENCH_PASSPHRASE,
            "ACCESSBOT_LOG_LEVEL": "WARNING",
        }
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD_WITH_PEAK, "sync", vendor, "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[1],
        )
        out, err = child.communicate(timeout=600)
        took = time.perf_counter() - start
        if child.returncode != 0:
            self.failures.append(f"{spec.label}: accessbot sync exited {child.returncode}: {err.decode()[-500:]}")
            return
        report = json.loads(out)[0]
        peak = re.search(rb"VmHWM:\s*(\d+) kB", err)
        held = self.held_by(spec)
        if report["result"] != "ok" or held != last.matches or report["sets"] == 0:
            self.failures.append(f"{spec.label}: own-process sync {report['result']}: {held} devices hold attributes")
        print(
            f"  {'process':<9}{took:>8.2f}   accessbot sync {vendor} in its own process after {cleared:,} attributes "
            f"were cleared: {report['sets']:,} sets, {report['matches']:,} matches; peak RSS "
            f"{int(peak.group(1)) / MIB if peak else float('nan'):,.0f} MiB (start-up, imports and the sync; issue 12 "
            "measured 293-300 MB)"
        )


def run(db: Database, label: str, args: argparse.Namespace) -> list[str]:
    print(f"{label}: {args.agents:,} agents per vendor, {args.devices:,} devices   {memory()}")
    start = time.perf_counter()
    fleet = build_fleet(args.agents, args.devices, args.vendors)
    print(f"  generated agents and devices in {time.perf_counter() - start:.2f} s   {memory()}")
    print("  devices: " + ", ".join(f"{kind} {n:,}" for kind, n in fleet.device_mix.items()))
    print("  agents:  " + ", ".join(f"{kind} {n:,}" for kind, n in fleet.agent_mix.items()))
    bench = Bench(db, args)
    bench.import_devices(fleet.devices)
    gc.freeze()  # the bench's own fixtures, which production's heap lacks (see "Garbage collection" above)
    for vendor in args.vendors:
        started = time.perf_counter()
        agents = fleet.agents(vendor)
        if vendor not in DEFAULT_VENDORS:
            print(f"\n  generated {len(agents):,} {vendor} agents in {time.perf_counter() - started:.2f} s")
        gc.freeze()
        bench.vendor(vendor, agents)
        del agents
    return bench.failures


def fetch_only(args: argparse.Namespace) -> None:
    """``--fetch-only``: each vendor's ``fetch_agents`` alone (HTTP, JSON decoding, conversion; no database, no
    plan), three times against its fake in a process of its own, as a sync runs it (full collections held off).
    The CPU is this process's on all threads (the client's paging threads included, the fake's excluded)."""
    fleet = build_fleet(args.agents, args.devices, args.vendors)
    specs = bench_specs(Stopwatch())
    gc.freeze()
    print(f"fetch_agents alone, {args.agents:,} agents per vendor, {FETCH_ROUNDS} rounds (median; each round)")
    for vendor in args.vendors:
        agents = fleet.agents(vendor)
        gc.freeze()
        with FakeProcess(vendor, agents) as fake:
            if args.latency:
                fake.add_latency(args.latency / 1000)
            client = specs.vendor(vendor).build(VENDORS[vendor].values(fake))
            cpus, walls = [], []
            try:
                for _ in range(FETCH_ROUNDS):
                    cpu_start, start = time.process_time(), time.perf_counter()
                    with fewer_full_collections():
                        fetched = len(client.fetch_agents())
                    cpus.append(time.process_time() - cpu_start)
                    walls.append(time.perf_counter() - start)
            finally:
                client.close()
        print(
            f"  {vendor:<12} {fetched:>7,} agents  cpu {statistics.median(cpus):5.2f} s "
            f"({', '.join(f'{c:.2f}' for c in cpus)})  wall {statistics.median(walls):5.2f} s"
        )
        del agents


def chosen_vendors(parser: argparse.ArgumentParser, names: list[str] | None) -> tuple[str, ...]:
    """``--vendor`` values (``all``: every registered vendor) in the registry's order, each once."""
    if not names:
        return DEFAULT_VENDORS
    wanted: set[str] = set()
    for name in names:
        for part in name.split(","):
            key = part.strip().lower()
            if key == "all":
                wanted.update(ORDER)
            elif key in VENDORS:
                wanted.add(key)
            else:
                parser.error(f"unknown vendor {part.strip()!r}; known: all, {', '.join(ORDER)}")
    return tuple(v for v in ORDER if v in wanted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--vendor",
        action="append",
        metavar="NAME",
        help=f"vendor to benchmark, repeatable, or all ({', '.join(ORDER)}); default: huntress and sentinelone",
    )
    parser.add_argument("--agents", type=int, default=50_000, help="agents per vendor (default 50000)")
    parser.add_argument("--devices", type=int, default=50_000, help="devices in the tailnet (default 50000)")
    parser.add_argument("--database-url", help="run on this PostgreSQL database (in a throwaway schema) instead")
    parser.add_argument("--change", type=float, default=0.01, help="share of agents changed before run 3 (0.01)")
    parser.add_argument("--remove", type=float, default=0.001, help="share of agents removed before run 3 (0.001)")
    parser.add_argument("--profile", action="store_true", help="cProfile the first import and each first sync")
    parser.add_argument(
        "--profile-run",
        action="append",
        choices=["first", "again", "changed"],
        default=[],
        help="cProfile this run of each vendor (repeatable; --profile means --profile-run first)",
    )
    parser.add_argument(
        "--own-process",
        choices=[*ORDER, "none"],
        default="sentinelone",
        help="after its runs (if chosen with --vendor), sync this vendor again from scratch with `accessbot sync` in "
        "a process of its own and report that process's peak RSS (default sentinelone: Huntress's real client "
        "waits for its 60-a-minute rate limit)",
    )
    parser.add_argument(
        "--fakes-in-process",
        action="store_true",
        help="serve the vendor fakes from threads of the bench's own process (before: their JSON encoding then "
        "competes with the sync for the GIL and counts in its wall time); default: a forked process of their own",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="MS",
        help="hold every vendor request this many milliseconds, as a remote vendor's round trip would (default 0: "
        "loopback; real vendor APIs answer a page in 50-300 ms)",
    )
    parser.add_argument(
        "--fetch-only",
        action="store_true",
        help=f"time each vendor's fetch_agents alone ({FETCH_ROUNDS} rounds, CPU and wall; no database, no sync)",
    )
    parser.add_argument("--profile-top", type=int, default=20, help="functions to show per profile (default 20)")
    args = parser.parse_args()
    args.vendors = chosen_vendors(parser, args.vendor)
    args.profile_runs = {*args.profile_run, *(["first"] if args.profile else [])}
    if args.agents < 100 or args.devices < 100:
        parser.error("--agents and --devices must be at least 100")
    if not (0 <= args.change <= 1 and 0 <= args.remove <= 1 and args.change + args.remove <= 1):
        parser.error("--change and --remove are shares between 0 and 1")

    if args.fetch_only:
        if args.fakes_in_process or args.database_url or args.profile_runs:
            parser.error("--fetch-only serves the fakes from their own process, uses no database and profiles nothing")
        fetch_only(args)
        return
    started = time.perf_counter()
    if args.database_url:
        if not normalize_url(args.database_url).startswith("postgresql"):
            parser.error("--database-url must be a PostgreSQL URL")
        with postgres_database(args.database_url) as db:
            failures = run(db, "PostgreSQL (throwaway schema)", args)
    else:
        with sqlite_database() as db:
            failures = run(db, "SQLite (temporary file)", args)
    print(f"\ntotal {time.perf_counter() - started:.1f} s, peak RSS {peak_rss_kib() / MIB:,.0f} MiB")
    for failure in failures:
        print(f"UNEXPECTED: {failure}")
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
