"""Running ``accessbot`` in-process in tests: one invoker, and assertions on its outcome."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from typer.testing import CliRunner, Result

from app.cli import cli
from app.cli.common import CliDeps
from app.core.clock import FrozenClock
from app.vendors.registry import REGISTRY, VendorRegistry

Run = Callable[..., Result]


def invoker(monkeypatch: pytest.MonkeyPatch, clock: FrozenClock, vendors: VendorRegistry = REGISTRY) -> Run:
    """``run("attrs", "get", ...)``: the real CLI on the frozen clock (and ``vendors``), injected as the CLI's
    ``CliDeps``; a traceback or a stray exception fails."""
    runner = CliRunner()
    deps = CliDeps(clock=clock, vendors=vendors)

    def invoke(*args: str, input: str | None = None) -> Result:
        result = runner.invoke(cli, list(args), input=input, obj=deps)
        assert "Traceback" not in result.output, result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


def cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: str | os.PathLike[str], db_url: str) -> None:
    """This test's database, a scratch working directory, no Tailscale credentials and no config file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("USER", "tester")
    for var in list(os.environ):
        if var.startswith("TAILSCALE_") or var == "ACCESSBOT_CONFIG":
            monkeypatch.delenv(var)


def ok(result: Result) -> str:
    """Assert success; return standard output."""
    assert result.exit_code == 0, result.output
    return result.stdout


def failed(result: Result, *fragments: str) -> str:
    """Assert a failed command printed one ``error:`` line with every fragment; return it."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
