"""Posture-gated access: does a device meet a named posture of the policy file right now?"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.core.reloading import ReloadingFile
from app.posture.check import check_device
from app.posture.policy import Policy, load_policy
from app.tailnet.errors import TailnetError
from app.tailnet.protocol import Tailnet


@dataclass(frozen=True, slots=True)
class GateResult:
    """Whether the device meets the posture, and in words why not."""

    passed: bool
    posture: str
    explanation: str


class PolicySource:
    """The policy file, parsed, re-read when it changes (a broken new file keeps the previous policy).

    Its path comes from the config (``path()``), so it may be ``None`` (no policy: ``None``) or change while the
    process runs: a new path is read at once and, until it parses, the previous policy stays. A broken or
    missing file never raises here; ``last_error`` says why it was refused.
    """

    def __init__(
        self,
        path: Callable[[], Path | None],
        *,
        min_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._min_interval = min_interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        """Held while switching to a new path, so two callers never start two readers of it."""
        self._file: ReloadingFile[Policy | None] | None = None

    @property
    def last_error(self) -> str | None:
        """Why the policy file's newest content was refused; ``None`` while it is the policy in use."""
        file = self._file
        return file.last_error if file is not None else None

    def __call__(self) -> Policy | None:
        path = self._path()
        if path is None:
            return None
        file = self._file
        if file is None or file.path != path:
            with self._lock:
                file = self._file
                if file is None or file.path != path:
                    file = ReloadingFile(
                        path,
                        load_policy,
                        what="policy",
                        min_interval=self._min_interval,
                        monotonic=self._monotonic,
                        initial=file.current if file is not None else None,
                    )
                    self._file = file
        return file()


class PostureGate:
    """Checks devices against postures, reading live attributes from the tailnet. Fails closed."""

    def __init__(self, tailnet: Tailnet, policy: Callable[[], Policy | None]) -> None:
        self.tailnet = tailnet
        self.policy = policy

    def check(self, posture: str, device_id: str) -> GateResult:
        """``passed`` only when the policy defines ``posture`` and every one of its conditions holds."""
        policy = self.policy()
        if policy is None:
            return GateResult(False, posture, "no policy file is configured, so postures cannot be checked")
        try:
            attributes = self.tailnet.get_attributes(device_id).attributes
        except TailnetError as exc:
            return GateResult(False, posture, f"the device's attributes could not be read: {exc.message}")
        result = next((p for p in check_device(policy, attributes).postures if p.name == posture), None)
        if result is None:
            return GateResult(False, posture, f"{posture} is not defined in the policy file")
        if result.passed:
            return GateResult(True, posture, f"meets {posture}")
        failed = [c.reason for c in result.conditions if not c.passed] + list(result.errors)
        return GateResult(False, posture, "; ".join(failed) or f"does not meet {posture}")
