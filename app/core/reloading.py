"""A value parsed from a file and re-read when the file changes: the one reload rule of the config and the policy.

Every caller asks the ``ReloadingFile`` for the value when it needs it (``source()``), so an edit of the file
reaches them all without a restart. The file counts as changed when its ``(st_mtime_ns, st_size)`` stamp
changes; the stamp is looked at no more than once per ``min_interval`` seconds, so a hot path costs one clock
read. A new file that fails to parse never replaces a good value: the previous one stays and ``last_error``
says why, until the file changes again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Final, Generic, Literal, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

Stamp = tuple[int, int] | None
"""``(st_mtime_ns, st_size)`` of a file, ``None`` when it cannot be looked at (gone, no permission)."""


class _Unset(Enum):
    UNSET = "unset"


_NOT_READ: Final[Stamp] = (-1, -1)
"""A stamp no file has: the file was never read, so the first look reads it."""


def file_stamp(path: Path) -> Stamp:
    """The stamp of ``path`` now."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class ReloadingFile(Generic[T]):
    """``parse(path)``, re-run when the file's stamp changes (looked at most once per ``min_interval`` seconds).

    Built without ``initial`` it reads the file at once and an invalid file raises (a bad file at start is an
    error to fix, not one to serve around). Built with ``initial`` it serves that value until a first good
    read (a source whose path appears or changes while the process runs). ``errors`` are the exceptions that
    mean "this content is invalid"; anything else propagates. Thread-safe: readers in the interval take the
    current value without locking; one thread at a time looks at the file and parses it.
    """

    def __init__(
        self,
        path: Path,
        parse: Callable[[Path], T],
        *,
        what: str = "file",
        errors: tuple[type[Exception], ...] = (Exception,),
        min_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        initial: T | Literal[_Unset.UNSET] = _Unset.UNSET,
    ) -> None:
        self.path = path
        self.min_interval = min_interval
        self.last_error: str | None = None
        """Why the newest content was refused; ``None`` once the file parses."""
        self._parse = parse
        self._what = what
        self._errors = errors
        self._monotonic = monotonic
        self._lock = threading.Lock()
        """Held while looking at and parsing the file: one reload at a time, never two parses of one change."""
        if initial is _Unset.UNSET:
            self._stamp = file_stamp(path)
            self._value: T = parse(path)
            self._checked = monotonic()
        else:
            self._stamp = _NOT_READ
            self._value = initial
            self._checked = -math.inf

    @property
    def current(self) -> T:
        """The value held now, without looking at the file."""
        return self._value

    def __call__(self) -> T:
        """The current value, re-read first if the file changed (looked at most once per ``min_interval``)."""
        if self._monotonic() - self._checked < self.min_interval:
            return self._value
        with self._lock:
            now = self._monotonic()
            if now - self._checked < self.min_interval:  # another thread looked while this one waited
                return self._value
            self._checked = now
            stamp = file_stamp(self.path)
            if stamp != self._stamp:
                self._stamp = stamp
                self._reload()
            return self._value

    def _reload(self) -> None:
        try:
            value = self._parse(self.path)
        except self._errors as exc:
            self.last_error = str(exc)
            log.error("keeping the previous %s: %s", self._what, exc)
            return
        self._value = value
        self.last_error = None
        log.info("reloaded %s from %s", self._what, self.path)
