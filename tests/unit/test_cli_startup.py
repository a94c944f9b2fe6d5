"""The CLI's start-up: ``accessbot --help`` imports none of what the commands run on, and the lazy command table
says exactly what the commands themselves say."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

import app.bootstrap
from app.cli import COMMANDS, _root, cli
from app.cli.lazy import load
from app.core.errors import ConfigError
from app.db.migrate import SchemaOutdated
from app.tailnet.errors import DeviceNotFound

HEAVY = ("sqlalchemy", "alembic", "httpx", "slack_bolt", "slack_sdk", "prometheus_client", "apscheduler")
"""Libraries only commands need; ``--help`` must not import them (nor the service graph)."""

HELP_RUN = """
import contextlib, io, json, runpy, sys
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    runpy.run_module("app", run_name="__main__", alter_sys=True)
print(json.dumps({"help": out.getvalue(), "modules": sorted(sys.modules)}))
"""
"""``python -m app ARGS``, then the modules it imported."""

COMMAND_MODULES = {spec.module for spec in COMMANDS.values()}

BEFORE = (
    "db",
    "devices",
    "attrs",
    "tailnet",
    "audit",
    "integrations",
    "posture",
    "serve",
    "sync",
    "doctor",
    "demo",
    "requests",
    "request_clients",
    "users",
    "reconcile",
)
"""The command modules in the order ``app/cli/__init__.py`` registered them before the lazy table."""


def eager_cli() -> typer.Typer:
    """The CLI as it was built before: every command module imported and registered up front."""
    eager = typer.Typer(
        name="accessbot", help=cli.info.help, no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False
    )
    eager.callback()(_root)  # the same root options (--version, completion)
    for name in BEFORE:
        importlib.import_module(f"app.cli.{name}").register(eager)
    return eager


@pytest.mark.parametrize("args", [["--help"], []], ids=["--help", "no arguments"])
def test_help_imports_no_command_module_nor_heavy_library(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HELP_RUN, *args], capture_output=True, text=True, timeout=60, check=True
    )
    shown = json.loads(proc.stdout)
    assert "Commands" in shown["help"] and "integrations" in shown["help"], shown["help"]
    modules = set(shown["modules"])
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], heavy
    loaded = sorted(modules & {"app.bootstrap", "app.db", "app.vendors", "app.slack", *COMMAND_MODULES})
    assert loaded == [], loaded


def test_the_table_names_every_command_with_its_own_one_line_help() -> None:
    registered = {}
    for module in COMMAND_MODULES:
        for name, command in load(module).items():
            assert COMMANDS[name].module == module, name
            registered[name] = command
    assert registered.keys() == COMMANDS.keys()
    for name, command in registered.items():
        first_paragraph = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
        assert COMMANDS[name].help == first_paragraph, name


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        [],
        ["attrs", "--help"],
        ["attrs"],
        ["tailnet", "keys", "--help"],
        ["integrations", "add", "--help"],
        ["serve", "--help"],
        ["worker", "--help"],
        ["sync", "--help"],
        ["atrs"],
        ["--nope"],
    ],
)
def test_help_and_usage_errors_read_as_they_did_before(args: list[str]) -> None:
    runner = CliRunner()
    lazy = runner.invoke(cli, args)
    before = runner.invoke(eager_cli(), args)
    assert (lazy.exit_code, lazy.stdout, lazy.stderr) == (before.exit_code, before.stdout, before.stderr)
    assert "Traceback" not in lazy.output


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (ConfigError("config.yaml: line 3: bad"), 2, "error: config.yaml: line 3: bad"),
        (SchemaOutdated("run `accessbot db upgrade`"), 2, "error: run `accessbot db upgrade`"),
        (DeviceNotFound("device 'x' not found"), 1, "error: device 'x' not found"),
    ],
    ids=["ConfigError", "SchemaOutdated", "TailnetError"],
)
def test_known_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, error: Exception, code: int, line: str) -> None:
    def build(**_: object) -> None:
        raise error

    monkeypatch.setattr(app.bootstrap, "build", build)
    result = CliRunner().invoke(cli, ["devices", "list"])
    assert result.exit_code == code, result.output
    assert result.stderr.strip() == line
