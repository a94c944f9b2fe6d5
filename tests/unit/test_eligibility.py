"""Device eligibility: the table of who may request which device, the messages, the profile setting, the picker's
search among eligible devices, the approver DM's owner line, and the service's checks (submit, approval, the
requester under a second Slack account)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.access import eligibility, identity
from app.access.errors import NotAllowed, SubmissionInvalid
from app.access.service import AccessService
from app.config.model import Config
from app.config.profiles import Profile
from app.core.clock import FrozenClock
from app.db import Database
from app.db.tables import AuditEventRow
from app.db.tables.access import RequestStatus
from app.slack.device_index import DeviceIndex
from app.slack.views.request_message import owner_line
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from tests.unit.access_support import BOB, REQ, access_request, make_config, submit


def profile(devices: Any = "own") -> Profile:
    return Profile.model_validate(
        {
            "id": "p",
            "description": "Prod",
            "attribute": "custom:x",
            "max_duration": "1h",
            "approvers": ["UBOB"],
            "devices": devices,
        }
    )


def dev(name: str, user: str = "", tags: tuple[str, ...] = ()) -> Device:
    return Device(id=name, node_id=f"n{name}", name=f"{name}.tail.ts.net", hostname=name, user=user, tags=tags)


MINE = dev("mine", "Alice@Example.com")
BOBS = dev("bobs", "bob@example.com")
TAGGED_DB = dev("db", "alice@example.com", ("tag:prod-db",))
TAGGED_WEB = dev("web", "ops@example.com", ("tag:web",))
OWN_OR_DB = {"own_or_tagged": ["tag:prod-db"]}


@pytest.mark.parametrize(
    ("devices", "device", "login", "eligible"),
    [
        ("own", MINE, "alice@example.com", True),  # case-insensitive
        ("own", BOBS, "alice@example.com", False),
        ("own", TAGGED_DB, "alice@example.com", False),  # a tagged device belongs to its tags, not its creator
        ("own", MINE, None, False),  # login unknown: nothing is provably theirs
        (OWN_OR_DB, MINE, "alice@example.com", True),
        (OWN_OR_DB, TAGGED_DB, "bob@example.com", True),
        (OWN_OR_DB, dev("db2", "", ("TAG:Prod-DB",)), None, True),  # tags compare case-insensitively
        (OWN_OR_DB, TAGGED_WEB, "alice@example.com", False),
        (OWN_OR_DB, BOBS, "alice@example.com", False),
        ("any", BOBS, None, True),
        ("any", TAGGED_WEB, "alice@example.com", True),
    ],
)
def test_eligibility_table(devices: Any, device: Device, login: str | None, eligible: bool) -> None:
    assert eligibility.is_eligible(profile(devices), device, login) is eligible
    problem = eligibility.device_problem(profile(devices), device, login, user_id="UAL")
    assert (problem is None) is eligible


@pytest.mark.parametrize(
    ("devices", "device", "login", "message"),
    [
        (
            "own",
            BOBS,
            "alice@example.com",
            "Only your own devices can be chosen for Prod; bobs belongs to bob@example.com "
            "(your Tailscale login is alice@example.com).",
        ),
        (
            "own",
            TAGGED_DB,
            "alice@example.com",
            "Only your own devices can be chosen for Prod; db belongs to the tags tag:prod-db "
            "(your Tailscale login is alice@example.com).",
        ),
        (
            OWN_OR_DB,
            TAGGED_WEB,
            "alice@example.com",
            "Only your own devices or devices tagged tag:prod-db can be chosen for Prod; "
            "web belongs to the tags tag:web "
            "(your Tailscale login is alice@example.com).",
        ),
        (
            "own",
            BOBS,
            None,
            "I cannot tell your Tailscale login (Slack shares no email for you), so I cannot tell which devices are "
            "yours. Ask an accessbot admin to run: accessbot users link UAL YOUR_TAILSCALE_LOGIN",
        ),
    ],
)
def test_the_refusal_says_who_owns_the_device_and_what_is_allowed(
    devices: Any, device: Device, login: str | None, message: str
) -> None:
    assert eligibility.device_problem(profile(devices), device, login, user_id="UAL") == message


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ("mine", "devices must be 'own', 'any' or {own_or_tagged: [tag:name, ...]}; got 'mine'"),
        (["own"], "devices must be 'own', 'any' or {own_or_tagged: [tag:name, ...]}"),
        ({"own_or_tagged": ["prod"]}, "own_or_tagged lists tags like tag:prod-db"),
        ({"own_or_tagged": []}, "at least 1 item"),
        ({"tagged": ["tag:x"]}, "Extra inputs are not permitted"),
    ],
)
def test_bad_devices_settings_are_refused(devices: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("{", r"\{").replace("(", r"\(")):
        profile(devices)


def test_the_default_is_own_and_the_picker_hint_says_so() -> None:
    assert profile().devices == "own"
    assert profile(OWN_OR_DB).devices.own_or_tagged == ("tag:prod-db",)  # type: ignore[union-attr]
    assert eligibility.scope_hint(profile()) == (
        "Only your own devices (registered with your Tailscale login) can get this access."
    )
    assert eligibility.scope_hint(profile(OWN_OR_DB)) == "Your own devices, or devices tagged tag:prod-db."
    assert eligibility.scope_hint(profile("any")) is None


# -- the picker's search among eligible devices ------------------------------------------------------------


class Listing:
    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices

    def list_devices(self) -> list[Device]:
        return self.devices


def test_search_eligible_offers_own_untagged_devices_then_the_allowed_tags() -> None:
    devices = [
        MINE,
        dev("mine2", "alice@example.com"),
        BOBS,
        TAGGED_DB,
        dev("db2", "", ("tag:prod-db", "tag:web")),
        dev("prod-dbx", "", ("tag:prod-dbx",)),  # a longer tag with the allowed one as prefix: not allowed
        TAGGED_WEB,
    ]
    index = DeviceIndex(Listing(devices))
    index.refresh()
    everything = index.search_eligible("", owner_email="ALICE@example.com", tags=("tag:prod-db",))
    assert [d.id for d in everything.mine] == ["mine", "mine2"]
    assert [d.id for d in everything.others] == ["db", "db2"]
    assert [d.id for d in index.search_eligible("", owner_email="alice@example.com").devices] == ["mine", "mine2"]
    typed = index.search_eligible("db", owner_email="alice@example.com", tags=("tag:prod-db",))
    assert ([d.id for d in typed.mine], [d.id for d in typed.others]) == ([], ["db", "db2"])
    assert [d.id for d in index.search_eligible("mine2", owner_email="alice@example.com").mine] == ["mine2"]
    assert index.search_eligible("", owner_email=None).devices == []
    capped = index.search_eligible("", owner_email="alice@example.com", tags=("tag:prod-db",), limit=3)
    assert [d.id for d in capped.devices] == ["mine", "mine2", "db"]
    one = index.search_eligible("d", owner_email="alice@example.com", tags=("tag:prod-db",), limit=1)
    assert [d.id for d in one.devices] == ["db"]


# -- the approver DM's owner line ----------------------------------------------------------------------------


NOW = datetime(2026, 1, 1)


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"device_owner": "req@example.com"}, "\nreq@example.com (the requester's own device)"),
        ({"device_owner": "Al@GitHub", "requester_login": "al@github"}, "\nAl@GitHub (the requester's own device)"),
        ({"device_owner": "bob@example.com"}, "\n(not the requester's: owned by bob@example.com)"),
        (
            {"device_owner": "req@example.com", "requester_login": "al@github"},
            "\n(not the requester's: owned by req@example.com)",
        ),
        ({"device_owner": "a@x.io", "requester_email": None}, "\nowner a@x.io"),
        ({"device_owner": ""}, ""),
    ],
)
def test_owner_line(fields: dict[str, Any], line: str) -> None:
    assert owner_line(access_request(NOW, **fields)) == line


# -- the service: submit, approval, the requester under a second account -------------------------------------


@pytest.fixture
def bobs_device(builtin: BuiltinTailnet) -> Device:
    return builtin.add_device(name="bob-laptop", user="bob@example.com", os="macos", actor=Actor("cli:t"))


def test_submitting_someone_elses_device_is_refused_on_the_device_field(
    service: AccessService, bobs_device: Device
) -> None:
    with pytest.raises(SubmissionInvalid) as info:
        submit(service, bobs_device)
    assert info.value.errors["device"] == (
        "Only your own devices can be chosen for Production; bob-laptop belongs to bob@example.com "
        "(your Tailscale login is req@example.com)."
    )


def test_a_link_makes_the_device_the_requesters_and_is_stored_and_audited(
    service: AccessService, db: Database, clock: FrozenClock, bobs_device: Device
) -> None:
    identity.link(db, REQ, "bob@example.com", by="cli:t", at=clock())
    request = submit(service, bobs_device, approver_ids=["UCAROL"])
    assert request.requester_login == "bob@example.com"
    with db.session() as session:
        details = session.scalars(select(AuditEventRow.details).where(AuditEventRow.action == "Access requested")).one()
    assert details["requester_login"] == "bob@example.com"


def test_approval_rechecks_the_device_as_the_tailnet_has_it_now_and_fails_clearly(
    service: AccessService, db: Database, clock: FrozenClock, builtin: BuiltinTailnet, device: Device
) -> None:
    request = submit(service, device)
    identity.link(db, REQ, "someone-else@example.com", by="cli:t", at=clock())  # the device is no longer theirs
    done = service.approve(request.id, BOB)
    assert done.status == RequestStatus.FAILED
    assert done.last_error == (
        "the device is not eligible: Only your own devices can be chosen for Production; req-laptop belongs to "
        "req@example.com (your Tailscale login is someone-else@example.com)."
    )
    assert builtin.get_attributes(device.id).attributes.get("custom:prodAccess") is None
    identity.unlink(db, REQ, by="cli:t", at=clock())
    assert service.retry(request.id, BOB).status == RequestStatus.GRANTED


def test_the_requester_under_a_second_slack_account_counts_as_the_requester(
    service: AccessService, db: Database, clock: FrozenClock, device: Device
) -> None:
    identity.link(db, BOB, "req@example.com", by="cli:t", at=clock())  # Bob's account is also the requester
    with pytest.raises(SubmissionInvalid) as info:
        submit(service, device, approver_ids=[BOB])
    assert (
        "is you under another Slack account (the same Tailscale login req@example.com)" in info.value.errors["approver"]
    )
    identity.unlink(db, BOB, by="cli:t", at=clock())
    request = submit(service, device, approver_ids=[BOB])
    identity.link(db, BOB, "req@example.com", by="cli:t", at=clock())
    with pytest.raises(NotAllowed, match="it is your own"):
        service.approve(request.id, BOB)
    with pytest.raises(NotAllowed, match="it is your own"):
        service.check_can_decide(request.id, BOB)


def test_any_and_own_or_tagged_profiles_through_the_service(
    db: Database, tailnet: Any, clock: FrozenClock, builtin: BuiltinTailnet, bobs_device: Device
) -> None:
    from app.access.people import StaticDirectory
    from tests.unit.access_support import CAROL, EMAILS

    tagged = builtin.add_device(
        name="db-1", user="ops@example.com", os="linux", tags=["tag:prod-db"], actor=Actor("cli:t")
    )
    configs: list[Config] = [make_config(devices={"own_or_tagged": ["tag:prod-db"]})]
    service = AccessService(db, tailnet, lambda: configs[0], StaticDirectory(EMAILS, {"sre": {CAROL}}), clock=clock)
    assert submit(service, tagged).status == RequestStatus.PENDING
    with pytest.raises(SubmissionInvalid, match="devices tagged tag:prod-db"):
        submit(service, bobs_device)
    configs[0] = make_config(devices="any")
    request = submit(service, bobs_device)
    assert service.approve(request.id, BOB).status == RequestStatus.GRANTED
    assert timedelta(0) < request.duration


@pytest.mark.parametrize("tags", [("tag:half",), ("tag:rare",), ("tag:half", "tag:rare"), ()])
def test_search_eligible_agrees_with_a_scan_of_every_device(tags: tuple[str, ...]) -> None:
    devices = []
    for i in range(3000):
        tagged = ("tag:half",) if i % 2 == 0 else ("tag:rare",) if i % 97 == 0 else ()
        devices.append(dev(f"h{i % 7}-{i:04d}", f"u{i % 30}@example.com", tagged))
    index = DeviceIndex(Listing(devices))
    index.refresh()
    ordered = sorted(devices, key=lambda d: d.name)
    for query in ("", "h", "h3", "h3-1", "h3-12", "tag:", "rare", "zz"):
        for limit in (1, 7, 100):
            got = index.search_eligible(query, owner_email="u4@example.com", tags=tags, limit=limit)
            matching = [d for d in ordered if not query or any(t.startswith(query) for t in _tokens(d))]
            mine = [d.id for d in matching if eligibility.is_own(d, "u4@example.com")][:limit]
            others = [d.id for d in matching if set(d.tags) & set(tags)][: limit - len(mine)]
            assert ([d.id for d in got.mine], [d.id for d in got.others]) == (mine, others), (query, limit)


def _tokens(device: Device) -> tuple[str, ...]:
    from app.slack.device_snapshot import device_tokens

    return device_tokens(device)


def test_the_picker_reads_the_profile_from_the_modal_state_then_its_initial_option() -> None:
    from types import SimpleNamespace

    from app.slack.ids import ActionId, BlockId
    from app.slack.listeners.options import form_profile

    two = make_config()
    ctx: Any = SimpleNamespace(config=lambda: two)
    state = {"state": {"values": {BlockId.PROFILE: {ActionId.PROFILE_SELECT: {"selected_option": {"value": "pair"}}}}}}
    assert form_profile(ctx, state).id == "pair"  # type: ignore[union-attr]
    built = {"blocks": [{"block_id": BlockId.PROFILE, "element": {"initial_option": {"value": "prod"}}}]}
    assert form_profile(ctx, built).id == "prod"  # type: ignore[union-attr]
    assert form_profile(ctx, {"blocks": []}) is None  # unknown: the picker offers all, submit decides
    assert form_profile(ctx, None) is None
    one = Config.model_validate({"profiles": [two.profiles[0].model_dump()]})
    ctx = SimpleNamespace(config=lambda: one)
    assert form_profile(ctx, {"blocks": []}).id == "prod"  # type: ignore[union-attr]
