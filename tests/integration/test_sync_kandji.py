"""Kandji's own sync behaviour (the contract every vendor meets is in test_sync_contract.py): Kong's per-second
rate limit is waited out."""

from __future__ import annotations

import time

from app.vendors import kandji
from tests.fakes.vendor_kandji import KANDJI_TOKEN, FakeKandji
from tests.integration.vendor_contract import kandji_reference


def test_rate_limited_pages_are_waited_out_with_kongs_headers() -> None:
    """The fake's per-second limit (Kong's) answers 429 + Retry-After; the real client waits and finishes."""
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    with FakeKandji(kandji_reference(), rate_limit_per_second=2, send_retry_after=False) as limited:
        client = kandji.KandjiClient(limited.url, KANDJI_TOKEN, sleep=sleep, page_size=1)
        try:
            agents = client.fetch_agents()
        finally:
            client.close()
        assert len(agents) == 5
        assert limited.rate_limited >= 1  # the fake refused some requests...
        assert any(s >= 1.0 for s in sleeps)  # ...and the client waited RateLimit-Reset (whole seconds)
