"""``accessbot posture check`` and ``accessbot posture lint`` through typer's CliRunner on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import Result

from app.core.clock import FrozenClock
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from tests.clitools import Run, cli_environment, invoker

POLICY = """// production access
{
  "postures": {
    "posture:edr": [
      "huntress:defenderStatus == 'Protected'",
      "huntress:firewallStatus == 'Enabled'",
      "sentinelOne:activeThreats == 0",
    ],
    "posture:mac": ["node:os == 'macos'"],
  },
  "grants": [
    {"src": ["autogroup:member"], "dst": ["tag:prod"], "ip": ["*"], "srcPosture": ["posture:edr"]},
    {"src": ["autogroup:member"], "dst": ["tag:dev"], "ip": ["*"], "srcPosture": ["posture:mac"]},
  ],
  "acls": [{"action": "accept", "src": ["*"], "dst": ["tag:web:443"]}],
}
"""

SEED_000 = """{
  "postures": {
    "posture:trusted": ["huntress:defenderStatus == 'Healthy'"],
    "posture:spare": ["node:os == 'linux'"],
  },
  "grants": [{"src": ["autogroup:member"], "dst": ["tag:prod"], "ip": ["*"], "srcPosture": ["posture:trusted"]}],
}
"""


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock) -> Run:
    """Run ``accessbot ARGS`` in-process against this test's database, on the frozen clock."""
    cli_environment(monkeypatch, tmp_path, db_url)
    return invoker(monkeypatch, clock)


@pytest.fixture
def laptop(builtin: BuiltinTailnet) -> Device:
    """A Windows laptop Huntress and SentinelOne report on: firewall on, Defender unhealthy, one threat."""
    setup = Actor("cli:setup")
    device = builtin.add_device(name="laptop.tail1234.ts.net", user="alice@example.com", os="windows", actor=setup)
    huntress = Actor.system("sync:huntress", "huntress")
    builtin.set_attribute(device.id, "huntress:defenderStatus", "Unhealthy", actor=huntress)
    builtin.set_attribute(device.id, "huntress:firewallStatus", "Enabled", actor=huntress)
    sentinel = Actor.system("sync:sentinelone", "sentinelOne")
    builtin.set_attribute(device.id, "sentinelOne:activeThreats", 1, actor=sentinel)
    return device


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.hujson"
    path.write_text(POLICY)
    return path


def error_line(result: Result, *fragments: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- check -----------------------------------------------------------------------------------------------


def test_check_explains_every_posture_and_lists_the_rules_met(run: Run, laptop: Device, policy: Path) -> None:
    result = run("posture", "check", "laptop", "--policy", str(policy))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"laptop.tail1234.ts.net ({laptop.id}) against {policy}"
    assert "  ✗ posture:edr" in lines
    assert any(
        line.startswith("      ✗ huntress:defenderStatus == 'Protected'  [actual: 'Unhealthy'] ") for line in lines
    )
    assert any(line.startswith("      ✓ huntress:firewallStatus == 'Enabled'  [actual: 'Enabled'] ") for line in lines)
    assert any(line.startswith("      ✗ sentinelOne:activeThreats == 0  [actual: 1] ") for line in lines)
    assert "  ✗ posture:mac" in lines
    assert any(line.startswith("      ✗ node:os == 'macos'  [actual: 'windows'] ") for line in lines)
    assert "Rules (the device meets 1 of 3):" in lines
    assert "  ✗ grants[0] (line 12) autogroup:member -> tag:prod: srcPosture posture:edr: not met" in lines
    assert "  ✓ acls[0] (line 15) * -> tag:web:443: open: no srcPosture and no defaultSrcPosture" in lines


def test_check_passes_once_the_vendors_report_a_healthy_device(
    run: Run, builtin: BuiltinTailnet, laptop: Device, policy: Path
) -> None:
    builtin.set_attribute(
        laptop.id, "huntress:defenderStatus", "Protected", actor=Actor.system("sync:huntress", "huntress")
    )
    builtin.set_attribute(
        laptop.id, "sentinelOne:activeThreats", 0, actor=Actor.system("sync:sentinelone", "sentinelOne")
    )
    result = run("posture", "check", laptop.node_id, "--policy", str(policy), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["device"] == {
        "id": laptop.id,
        "nodeId": laptop.node_id,
        "name": "laptop.tail1234.ts.net",
        "hostname": "laptop",
    }
    assert data["policy"] == str(policy)
    assert [(p["name"], p["passed"]) for p in data["postures"]] == [("posture:edr", True), ("posture:mac", False)]
    assert [c["actual"] for c in data["postures"][0]["conditions"]] == ["Protected", "Enabled", 0]
    assert [(r["kind"], r["index"], r["met"], r["metBy"]) for r in data["rules"]] == [
        ("grant", 0, True, ["posture:edr"]),
        ("grant", 1, False, []),
        ("acl", 0, True, []),
    ]
    assert data["attributes"]["node:os"] == "windows"
    assert data["problems"] == []


def test_check_reads_the_policy_file_of_the_config_relative_to_it(
    run: Run, laptop: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "tailnet.hujson").write_text(POLICY)
    (conf / "accessbot.yml").write_text("policy_file: tailnet.hujson\n")
    monkeypatch.setenv("ACCESSBOT_CONFIG", str(conf / "accessbot.yml"))
    result = run("posture", "check", "laptop")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith(f"against {conf / 'tailnet.hujson'}")

    lint = run("posture", "lint")
    assert lint.exit_code == 0, lint.output
    assert lint.stdout == ""
    assert "0 errors, 0 warnings" in lint.stderr


def test_check_without_a_policy_file_says_how_to_give_one(run: Run, laptop: Device) -> None:
    result = run("posture", "check", "laptop")
    assert result.exit_code == 2
    error_line(result, "no policy file", "--policy", "policy_file")


def test_check_refuses_a_policy_that_is_not_hujson(run: Run, laptop: Device, tmp_path: Path) -> None:
    path = tmp_path / "broken.hujson"
    path.write_text('{\n  "postures": {\n    "posture:a": []\n    "posture:b": []\n}')
    result = run("posture", "check", "laptop", "--policy", str(path))
    assert result.exit_code == 2
    error_line(result, f"{path}: line 4, column 5: expected ',' or '}}'")


def test_check_lists_syntax_errors_and_structure_problems(run: Run, laptop: Device, tmp_path: Path) -> None:
    path = tmp_path / "policy.hujson"
    path.write_text('{"postures": {"posture:a": ["node:os = \'windows\'"]}, "acls": {}}')
    result = run("posture", "check", "laptop", "--policy", str(path))
    assert result.exit_code == 0, result.output
    assert "  ✗ posture:a" in result.stdout.splitlines()
    assert "      ✗ error: cannot parse \"node:os = 'windows'\" at line 1, column 38: expected an operator" in (
        result.stdout
    )
    assert f"error: {path}:1:62: acls must be a list of rules, not an object (ignored)" in result.stderr


def test_check_an_unknown_device_fails(run: Run, laptop: Device, policy: Path) -> None:
    result = run("posture", "check", "nosuchdevice", "--policy", str(policy))
    assert result.exit_code == 1
    error_line(result, "nosuchdevice")


# -- lint ------------------------------------------------------------------------------------------------


def test_lint_reports_seed_000_and_exits_0_on_warnings_alone(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "seed.hujson"
    path.write_text(SEED_000)
    result = run("posture", "lint", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{path}:3:53: warning: 'Healthy' is not a value of huntress:defenderStatus (one of 'Incompatible', "
        "'Unhealthy', 'Protected', 'Unmanaged'): the condition never matches; did you mean 'Protected'?",
        f"{path}:4:5: warning: posture:spare is defined but no grant, acl or defaultSrcPosture uses it",
    ]
    assert f"{path}: 0 errors, 2 warnings" in result.stderr


def test_lint_exits_1_when_there_is_an_error(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "policy.hujson"
    path.write_text(SEED_000.replace('"posture:trusted"]', '"posture:trustd"]'))
    result = run("posture", "lint", str(path))
    assert result.exit_code == 1
    assert (
        f"{path}:6:93: error: posture:trustd is not defined in postures; did you mean 'posture:trusted'?"
        in result.stdout.splitlines()
    )
    assert "1 error, 3 warnings" in result.stderr


def test_lint_exits_1_on_bad_hujson_and_bad_syntax(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "policy.hujson"
    path.write_text('{"postures": {"posture:a": ["node:os ==", ]}, "grants": [{"srcPosture": ["posture:a"]}]}')
    result = run("posture", "lint", str(path), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {
            "level": "error",
            "line": 1,
            "column": 40,
            "message": "posture:a: expected a value: 'string', a number, true or false, found end of condition",
        }
    ]
    path.write_text('{"postures": {"posture:a": [}')
    result = run("posture", "lint", str(path))
    assert result.exit_code == 1
    assert result.stdout == f"{path}:1:29: error: expected a value or ']', found '}}'\n"


def test_lint_of_a_clean_file_exits_0(run: Run, policy: Path) -> None:
    result = run("posture", "lint", str(policy))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_lint_without_a_file_or_a_readable_one(run: Run, tmp_path: Path) -> None:
    result = run("posture", "lint")
    assert result.exit_code == 2
    error_line(result, "no policy file")
    missing = tmp_path / "missing.hujson"
    result = run("posture", "lint", str(missing))
    assert result.exit_code == 2
    error_line(result, str(missing), "cannot read the policy file")
