"""``accessbot posture unlock DEVICE --profile ID`` through typer's CliRunner on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.clock import FrozenClock
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from tests.clitools import Run, cli_environment, failed, invoker, ok

POLICY = """// who may reach production, and from what
{
  "postures": {
    "posture:prod": ["custom:prodAccess == true", "node:os IN ['macos', 'linux']"],
    "posture:db": ["custom:prodAccess == true", "huntress:firewallStatus == 'Enabled'"],
  },
  "grants": [
    {"src": ["group:eng"], "dst": ["tag:prod"], "ip": ["tcp:443", "tcp:22"], "srcPosture": ["posture:prod"]},
    {"src": ["group:eng"], "dst": ["tag:db"], "ip": ["tcp:5432"], "srcPosture": ["posture:db"]},
    {"src": ["autogroup:member"], "dst": ["tag:idp"], "app": {"tailscale.com/cap/tsidp": [{}]},
     "srcPosture": ["posture:prod"]},
  ],
  "acls": [{"action": "accept", "src": ["group:eng"], "dst": ["tag:legacy:22"], "srcPosture": ["posture:prod"]}],
}
"""

CONFIG = """
policy_file: tailnet.hujson
profiles:
  - id: prod
    attribute: custom:prodAccess
    max_duration: 1h
    approvers: [bob@example.com]
  - id: pair
    attribute: custom:pairAccess
    value: rw
    max_duration: 1h
    approvers: [bob@example.com]
"""


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock) -> Run:
    cli_environment(monkeypatch, tmp_path, db_url)
    (tmp_path / "tailnet.hujson").write_text(POLICY)
    (tmp_path / "accessbot.yml").write_text(CONFIG)
    monkeypatch.setenv("ACCESSBOT_CONFIG", str(tmp_path / "accessbot.yml"))
    return invoker(monkeypatch, clock)


@pytest.fixture
def laptop(builtin: BuiltinTailnet) -> Device:
    return builtin.add_device(
        name="laptop.tail1234.ts.net", user="alice@example.com", os="macos", actor=Actor("cli:setup")
    )


def test_unlock_lists_what_the_profile_opens_and_what_stays_shut(run: Run, laptop: Device) -> None:
    out = ok(run("posture", "unlock", "laptop", "--profile", "prod"))
    lines = out.splitlines()
    assert lines[0] == f"laptop.tail1234.ts.net ({laptop.id}): profile prod sets custom:prodAccess = true"
    assert lines[1] == "Opens:"
    assert "  ✓ grants[0]  tag:prod  tcp:443, tcp:22  (from group:eng)" in lines
    assert "  ✓ grants[2]  tag:idp  app tailscale.com/cap/tsidp  (from autogroup:member)" in lines
    assert "  ✓ acls[0]  tag:legacy:22  (from group:eng)" in lines
    shut = lines.index("Still shut:")
    assert lines[shut + 1] == "  ✗ grants[1]  tag:db  tcp:5432  (from group:eng)"
    assert lines[shut + 2].strip() == (
        "posture:db: huntress:firewallStatus == 'Enabled' (huntress:firewallStatus is not set)"
    )


def test_unlock_as_json(run: Run, laptop: Device, tmp_path: Path) -> None:
    data = json.loads(ok(run("posture", "unlock", laptop.id, "--profile", "prod", "--json")))
    assert data["device"]["id"] == laptop.id and data["profile"] == "prod"
    assert data["policy"] == str(tmp_path / "tailnet.hujson")
    assert [r["rule"] for r in data["unlocked"]] == ["grants[0]", "grants[2]", "acls[0]"]
    assert data["unlocked"][0]["ip"] == ["tcp:443", "tcp:22"]
    assert [r["rule"] for r in data["blocked"]] == ["grants[1]"] and data["lost"] == []


def test_unlock_of_an_attribute_nothing_uses(run: Run, laptop: Device) -> None:
    out = ok(run("posture", "unlock", "laptop", "--profile", "pair"))
    assert out.splitlines()[1] == "Nothing in the policy uses custom:pairAccess: the profile opens no access by itself."


def test_unlock_refusals_are_one_line(run: Run, laptop: Device, tmp_path: Path) -> None:
    failed(run("posture", "unlock", "laptop", "--profile", "nope"), "no profile 'nope'", "profiles: prod, pair")
    (tmp_path / "broken.hujson").write_text("{ nope")
    failed(run("posture", "unlock", "laptop", "--profile", "prod", "--policy", "broken.hujson"), "broken.hujson")
    (tmp_path / "accessbot.yml").write_text(CONFIG.replace("policy_file: tailnet.hujson\n", ""))
    failed(run("posture", "unlock", "laptop", "--profile", "prod"), "no policy to read", "policy_file:read")
    result = run("posture", "unlock", "nosuchdevice", "--profile", "prod", "--policy", "tailnet.hujson")
    assert result.exit_code != 0 and "Traceback" not in result.output
