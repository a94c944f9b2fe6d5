"""The outcome of one set-up check (``accessbot doctor``): a status, what was found and, when not ok, what to do.

It lives in ``core`` so every layer that can check something (Slack, the tailnet, the vendors) returns the
same value without importing the layers above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """``ok``; ``warn`` (works, but something is missing or skipped); ``fail`` (the bot will not work as set up)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of ``accessbot doctor``: ``name`` groups it, ``detail`` says what was found, ``hint`` what to do."""

    name: str
    status: Status
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        """A JSON-ready dict (``hint`` is ``""`` when there is nothing to do)."""
        return {"check": self.name, "status": str(self.status), "detail": self.detail, "hint": self.hint}


def ok(name: str, detail: str) -> Check:
    """A passed check."""
    return Check(name, Status.OK, detail)


def warn(name: str, detail: str, hint: str = "") -> Check:
    """A check that found something to look at, without failing the run."""
    return Check(name, Status.WARN, detail, hint)


def fail(name: str, detail: str, hint: str = "") -> Check:
    """A failed check: ``accessbot doctor`` exits non-zero."""
    return Check(name, Status.FAIL, detail, hint)


def count(number: int, noun: str) -> str:
    """``1 profile``, ``2 profiles``: a count with its noun (plural by ``s``)."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """An error as one short line: its first non-empty line, whitespace collapsed, cut at ``limit``."""
    text = str(error) if not isinstance(error, str) else error
    first = next((line.strip() for line in text.splitlines() if line.strip()), "") or type(error).__name__
    first = " ".join(first.split())
    return first if len(first) <= limit else first[: limit - 1] + "…"
