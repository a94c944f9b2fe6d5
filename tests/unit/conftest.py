"""Fixtures of the access-domain unit tests: an ``AccessService`` over the built-in tailnet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from app.access.people import StaticDirectory
from app.access.service import AccessService
from app.config.model import Config
from app.core.clock import FrozenClock
from app.db import Database
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor, Device
from tests.unit.access_support import CAROL, EMAILS, FlakyTailnet, make_config


@pytest.fixture
def config() -> list[Config]:
    return [make_config()]


@pytest.fixture
def device(builtin: BuiltinTailnet) -> Device:
    return builtin.add_device(name="req-laptop", user="req@example.com", os="macos", actor=Actor("cli:t"))


@pytest.fixture
def tailnet(builtin: BuiltinTailnet) -> FlakyTailnet:
    return FlakyTailnet(builtin)


@pytest.fixture
def service(db: Database, tailnet: FlakyTailnet, config: list[Config], clock: FrozenClock) -> AccessService:
    directory = StaticDirectory(EMAILS, {"sre": {CAROL}})
    return AccessService(db, tailnet, lambda: config[0], directory, clock=clock)  # type: ignore[arg-type]


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    """respx's router for a vendor client's requests (routes need not all be called)."""
    with respx.mock(assert_all_called=False) as router:
        yield router
