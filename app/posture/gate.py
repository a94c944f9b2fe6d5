"""Posture-gated access: does a device meet a named posture of the policy file right now?"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.posture.check import check_device
from app.posture.policy import Policy, load_policy
from app.tailnet.errors import TailnetError
from app.tailnet.protocol import Tailnet

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GateResult:
    """Whether the device meets the posture, and in words why not."""

    passed: bool
    posture: str
    explanation: str


class PolicySource:
    """The policy file, parsed, re-read when it changes (a broken new file keeps the previous one)."""

    def __init__(self, path: Callable[[], Path | None]) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[str, int, int] | None = None
        self._policy: Policy | None = None
        self.last_error: str | None = None

    def __call__(self) -> Policy | None:
        path = self._path()
        if path is None:
            return None
        try:
            stat = path.stat()
        except OSError as exc:
            self.last_error = f"{path}: {exc.strerror or exc}"
            return self._policy
        stamp = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._policy = load_policy(path)
                    self.last_error = None
                except Exception as exc:  # keep serving the last good policy; say why
                    self.last_error = str(exc)
                    log.error("keeping the previous policy: %s", exc)
                self._stamp = stamp
            return self._policy


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
