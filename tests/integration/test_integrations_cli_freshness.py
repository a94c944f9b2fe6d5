"""``accessbot integrations update <vendor> --max-agent-age AGE`` and the matching line of ``status``."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from app.vendors.integrations import Integrations
from tests.clitools import Run, failed, ok
from tests.integration import test_integrations_cli as base

# the CLI fixtures of the integrations tests (this environment, the real vendors, the service on its database)
env, vendors, real_vendors, run, cipher, service = (
    base.env,
    base.vendors,
    base.real_vendors,
    base.run,
    base.cipher,
    base.service,
)
add_huntress = base.add_huntress


def test_max_agent_age_is_set_alone_or_with_fields_and_turned_off(
    run: Run, service: Integrations, real_vendors: Any
) -> None:
    add_huntress(run)
    out = ok(run("integrations", "update", "huntress", "--max-agent-age", "7d"))
    assert "updated Huntress" in out and "max agent age 7d: agents not seen within it write only huntress:stale" in out
    assert service.get("huntress").max_agent_age == timedelta(days=7)
    assert service.get("huntress").settings == {}  # not a vendor setting

    ok(run("integrations", "update", "huntress", "--org-id", "9", "--max-agent-age", "1d12h"))
    integration = service.get("huntress")
    assert integration.max_agent_age == timedelta(days=1, hours=12) and integration.settings == {"organization_id": "9"}
    listed = json.loads(ok(run("integrations", "list", "--json")))
    assert listed[0]["max_agent_age"] == "1d12h"

    out = ok(run("integrations", "update", "huntress", "--max-agent-age", "off"))
    assert "max agent age off" in out and service.get("huntress").max_agent_age is None


def test_a_bad_max_agent_age_is_one_line_and_changes_nothing(
    run: Run, service: Integrations, real_vendors: Any
) -> None:
    add_huntress(run, "--org-id", "7")
    failed(run("integrations", "update", "huntress", "--org-id", "8", "--max-agent-age", "10m"), "shorter than 1h")
    failed(run("integrations", "update", "huntress", "--max-agent-age", "weekly"), "invalid duration 'weekly'")
    assert service.get("huntress").settings == {"organization_id": "7"}
    assert service.get("huntress").max_agent_age is None
    failed(run("integrations", "update", "huntress"), "nothing to update", "--max-agent-age")


def test_status_shows_how_devices_matched(run: Run, real_vendors: Any) -> None:
    add_huntress(run)
    ok(run("integrations", "update", "huntress", "--max-agent-age", "7d"))
    out = " ".join(ok(run("integrations", "status")).split())  # the console wraps long lines
    assert "0 matched by serial number, 0 by MAC address; 0 with an agent not seen within 7d (marked stale)" in out
    (status,) = json.loads(ok(run("integrations", "status", "--json")))
    assert (status["matches_by_serial"], status["matches_by_mac"], status["max_agent_age"]) == (0, 0, "7d")
