"""CLI start-up: the wall time of ``accessbot`` commands, lazy command modules against eager ones.

    python bench/startup.py [--runs 3]

Each command runs as a fresh process, ``--runs`` times per side, alternating the sides; medians are printed.
**accessbot** is the ``accessbot`` console script as shipped: the command list is a static table and a command's
module (with SQLAlchemy, alembic, httpx, the vendors...) is imported only when that command runs or shows its own
help. **naive** is the same CLI built as before: every command module imported and registered up front.

Commands: ``--help``, ``attrs --help`` and ``devices list`` (a real command: settings, database, built-in
tailnet) on a migrated SQLite file of its own. Both sides must print the same; the modules each imports are
counted with ``-X importtime``. The first run of each side is a warm-up (bytecode, page cache) and not counted.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_HELP_S = 0.3

NAIVE = """
import importlib, sys
import typer
from app.cli import _root  # the same root options (--version, completion) as the shipped CLI
cli = typer.Typer(name="accessbot", help="Just-in-time Tailscale access from Slack, with EDR posture sync.",
                  no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)
cli.callback()(_root)
for name in ("db", "devices", "attrs", "tailnet", "audit", "integrations", "posture", "serve", "sync",
             "doctor", "demo", "requests", "request_clients", "users", "reconcile"):
    importlib.import_module(f"app.cli.{name}").register(cli)
sys.argv[0] = "accessbot"
cli()
"""
"""The CLI as ``app/cli/__init__.py`` built it before the lazy table (same modules, same order)."""

SHIPPED = "import sys; sys.argv[0] = 'accessbot'; from app.cli import main; sys.exit(main())"
"""What the ``accessbot`` console script runs."""

COMMANDS: list[list[str]] = [["--help"], ["attrs", "--help"], ["devices", "list"]]
SIDES = {"accessbot": [sys.executable, "-c", SHIPPED], "naive": [sys.executable, "-c", NAIVE]}


def run(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, str]:
    """One process: its wall time, its CPU time (user + system: less swayed by other processes on the machine)
    and its standard output; a failure stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or "Traceback" in proc.stderr:
        sys.exit(f"{' '.join(argv[-3:])} failed ({proc.returncode}):\n{proc.stderr}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu, proc.stdout


def modules_imported(argv: list[str], env: dict[str, str], cwd: str) -> int:
    """How many modules one run imports (the lines of ``-X importtime``)."""
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    return sum(line.startswith("import time:") for line in proc.stderr.splitlines()) - 1  # minus the header


@dataclass
class Side:
    """The timed runs of one side for one command."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    modules: int = 0

    def line(self) -> str:
        runs = ", ".join(f"{t:.3f}" for t in self.wall)
        return (
            f"{statistics.median(self.wall):.3f} s wall ({runs}), {statistics.median(self.cpu):.3f} s CPU, "
            f"{self.modules} modules imported"
        )


def measure(args: list[str], runs: int, env: dict[str, str], cwd: str) -> dict[str, Side]:
    """``runs`` timed runs per side (after one warm-up each), alternating sides; outputs must match."""
    sides = {side: Side() for side in SIDES}
    outputs: dict[str, str] = {}
    for number in range(runs + 1):
        for side, prefix in SIDES.items():
            elapsed, cpu, outputs[side] = run([*prefix, *args], env, cwd)
            if number:
                sides[side].wall.append(elapsed)
                sides[side].cpu.append(cpu)
    if outputs["accessbot"] != outputs["naive"]:
        sys.exit(f"accessbot {' '.join(args)}: the two sides printed different output")
    for side, prefix in SIDES.items():
        sides[side].modules = modules_imported([*prefix, *args], env, cwd)
    return sides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per command and side (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAILSCALE_") and k != "ACCESSBOT_CONFIG"}
        env.update(DATABASE_URL=f"sqlite:///{tmp}/startup.db", COLUMNS="100", PYTHONPATH=str(ROOT), USER="bench")
        run([*SIDES["accessbot"], "db", "upgrade"], env, tmp)
        floor = statistics.median(run([sys.executable, "-c", "pass"], env, tmp)[0] for _ in range(args.runs))
        print(f"CLI start-up, medians of {args.runs} (python itself starts in {floor:.3f} s)")
        help_median = None
        for command in COMMANDS:
            result = measure(command, args.runs, env, tmp)
            print(f"\n  accessbot {' '.join(command)}")
            for side, measured in result.items():
                print(f"    {side:<10} {measured.line()}")
            if command == ["--help"]:
                help_median = statistics.median(result["accessbot"].wall)
        assert help_median is not None
        verdict = "met" if help_median <= TARGET_HELP_S else "NOT met"
        print(f"\n  target accessbot --help <= {TARGET_HELP_S} s: {verdict} ({help_median:.3f} s)")


if __name__ == "__main__":
    main()
