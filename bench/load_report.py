"""What ``bench/load.py`` measured: one run's details, and the medians of every run side by side."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

STEPS = ("shortcut", "options", "submit", "approve")
SLACK_ACK_LIMIT = 3.0
"""Slack shows the user an error when the app answers later than this (Slack's 3-second acknowledgement deadline)."""


@dataclass
class Flow:
    index: int
    requester: str
    approver: str
    device_id: str
    device_name: str
    latencies: dict[str, float] = field(default_factory=dict)
    total: float | None = None
    request_id: int | None = None
    error: str | None = None
    stage: str = "not started"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency_line(label: str, values: list[float], *, ack: bool = True) -> str:
    if not values:
        return f"  {label:<12}     0"
    line = (
        f"  {label:<12}{len(values):>5}   p50 {percentile(values, 50) * 1000:8.1f} ms   "
        f"p99 {percentile(values, 99) * 1000:8.1f} ms   max {max(values) * 1000:8.1f} ms"
    )
    return line + (f"   over 3 s: {sum(v > SLACK_ACK_LIMIT for v in values)}" if ack else "")


@dataclass
class Run:
    """What one run of the flows measured."""

    variant: str
    flows: list[Flow]
    served: dict[str, list[float]]
    took: float
    problems: list[str]
    locked: int
    tracebacks: int
    log_errors: int
    deferred: int
    slack_calls: int
    users_info: int
    cpu_app: float
    cpu_bench: float
    checking: int

    @property
    def failed(self) -> list[Flow]:
        return [f for f in self.flows if f.error is not None or f.total is None]

    def client(self, step: str) -> list[float]:
        return [f.latencies[step] for f in self.flows if step in f.latencies]

    def late(self, step: str) -> int:
        return sum(v > SLACK_ACK_LIMIT for v in self.client(step))

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems and not self.locked


def report(run: Run) -> None:
    """The details of one run."""
    done = len(run.flows) - len(run.failed)
    print(
        f"  {done} of {len(run.flows)} flows completed in {run.took:.1f} s; {run.slack_calls} Slack Web API calls "
        f"served ({run.users_info} users.info during the flows); CPU: app processes {run.cpu_app:.1f} s, "
        f"this process {run.cpu_bench:.1f} s"
    )
    print("  HTTP answer (the ack) per step, as the client saw it / as the server measured it:")
    for step in STEPS:
        print(latency_line(step, run.client(step)))
        print(latency_line("  server", run.served.get(step, [])))
    print(f"  submissions acknowledged with the 'checking' view (outcome shown after): {run.checking}")
    print(latency_line("overall", [f.total for f in run.flows if f.total is not None], ack=False))
    per_step = Counter(
        f.error.split(":", 1)[0] for f in run.failed if f.error and ("HTTP" in f.error or "within" in f.error)
    )
    print(
        f"  errors: {sum(per_step.values())} non-2xx or timed-out requests"
        + (f" {dict(per_step)}" if per_step else "")
        + f", {len(run.failed)} flows not completed"
    )
    for flow in run.failed[:5]:
        print(f"    flow {flow.index}: {flow.error}")
    print(f"  app logs: {run.locked} 'database is locked', {run.tracebacks} tracebacks, {run.log_errors} ERROR lines")
    print(
        f"  exactly-once: {'ok' if not run.problems else 'VIOLATED'} "
        "(one attribute set event, one granted notification, one granted notice per request; none in granting)"
    )
    for problem in run.problems[:10]:
        print(f"    {problem}")
    if run.deferred:
        print(f"  note: {run.deferred} granted notices were delivered by the worker (a retry or a later round)")


def summary(runs: list[Run]) -> None:
    """Medians over the rounds, accessbot and the naive baseline side by side."""

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    variants = list(dict.fromkeys(r.variant for r in runs))
    print(f"\nmedians of {max(sum(r.variant == v for r in runs) for v in variants)} runs (ms; late = acks after 3 s):")
    print(f"  {'step':<10}" + "".join(f"{v:>46}" for v in variants))
    print(f"  {'':<10}" + "".join(f"{'client p50/p99':>24}{'server p50/p99':>16}{'late':>6}" for _ in variants))
    for step in STEPS:
        cells = []
        for v in variants:
            mine = [r for r in runs if r.variant == v]
            client = [(percentile(r.client(step), 50), percentile(r.client(step), 99)) for r in mine if r.client(step)]
            server = [(percentile(s, 50), percentile(s, 99)) for r in mine if (s := r.served.get(step))]
            cells.append(
                f"{median([c[0] for c in client]) * 1000:>12.0f}/{median([c[1] for c in client]) * 1000:<7.0f}"
                f"{median([s[0] for s in server]) * 1000:>12.0f}/{median([s[1] for s in server]) * 1000:<7.0f}"
                f"{median([r.late(step) for r in mine]):>6.0f}"
            )
        print(f"  {step:<10}" + "".join(f"{c:>46}" for c in cells))
    for v in variants:
        mine = [r for r in runs if r.variant == v]
        print(
            f"  {v}: flow p50 {median([median([f.total for f in r.flows if f.total]) for r in mine]):.1f} s, "
            f"exactly-once {'ok' if all(not r.problems for r in mine) else 'VIOLATED'} in {len(mine)} runs, "
            f"{sum(len(r.failed) for r in mine)} flows not completed, "
            f"{sum(r.users_info for r in mine)} users.info calls during flows"
        )
