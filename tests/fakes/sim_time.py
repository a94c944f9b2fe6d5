"""Simulated time for vendor clients and fakes: a monotonic clock that moves only when told, and a ``sleep`` that
records each wait and moves that clock instead of waiting (so retry and token-lifetime tests take no real time)."""

from __future__ import annotations


class Mono:
    """Monotonic seconds, shared by a client (token lifetimes, retry budgets) and its fake (token expiry)."""

    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class SimSleep:
    """A ``sleep`` that records every wait (never negative) and, given a clock, moves it on by that much."""

    def __init__(self, clock: Mono | None = None) -> None:
        self.clock = clock
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds
