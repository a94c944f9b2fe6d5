"""A vendor fake serving from a process of its own, as a remote vendor would.

In the bench's own process a fake's work (building and encoding 50,000 agents' JSON on every run) competes with
the sync for the GIL and is counted in the sync's wall time; a real vendor does that work on its own machines.
The child is forked after the agents are generated (it inherits them without pickling) and answers a few
commands over a pipe: its URL, its counters, and new agents to serve for the "changed" run.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

from sync_vendors import VENDORS

Json = dict[str, Any]


class FakeProcess:
    """The vendor's loopback fake (``VENDORS[vendor].open_fake``) in a forked child, driven through a pipe."""

    def __init__(self, vendor: str, records: list[Json]) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(vendor, records, child), daemon=True)
        self._process.start()
        child.close()
        self.url: str = self._ask("url")

    @property
    def requests(self) -> int:
        """Requests the fake received (its own counter)."""
        return int(self._ask("get", "requests"))

    @property
    def rate_limited(self) -> int:
        """Requests the fake refused with 429 (0 for fakes without a rate limit)."""
        return int(self._ask("get", "rate_limited") or 0)

    @property
    def cpu_seconds(self) -> float:
        """CPU time the fake's process has used so far (all its threads): its share of the machine's cores."""
        return float(self._ask("cpu"))

    def add_latency(self, seconds: float) -> None:
        """Hold every request this long before answering, as a remote vendor's round trip would."""
        self._ask("latency", seconds)

    def serve(self, records: list[Json]) -> None:
        """Serve these agents from now on (``VendorBench.serve`` in the child)."""
        self._ask("serve", records)

    def close(self) -> None:
        if self._process.is_alive():
            self._ask("close")
        self._process.join(timeout=30)
        self._conn.close()

    def __enter__(self) -> FakeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, *message: Any) -> Any:
        self._conn.send(message)
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"the fake's process failed: {value}")
        return value


def add_latency(fake: Any, seconds: float) -> None:
    """Every request of ``fake`` held ``seconds`` (its ``stall_next``; concurrent requests are held side by side)."""
    fake.stall_next(seconds, times=10**9)


def _serve(vendor: str, records: list[Json], conn: Connection) -> None:
    """The child: open the fake and answer commands until told to close."""
    bench = VENDORS[vendor]
    with bench.open_fake(records) as fake:
        while True:
            command, *args = conn.recv()
            try:
                if command == "close":
                    conn.send((True, None))
                    return
                if command == "url":
                    reply: Any = fake.url
                elif command == "get":
                    reply = getattr(fake, args[0], 0)
                elif command == "cpu":
                    reply = time.process_time()
                elif command == "latency":
                    add_latency(fake, args[0])
                    reply = None
                elif command == "serve":
                    bench.serve(fake, args[0])
                    reply = None
                else:
                    raise ValueError(f"unknown command {command!r}")
            except Exception as exc:  # reported to the parent, which raises it
                conn.send((False, repr(exc)))
            else:
                conn.send((True, reply))
