"""The current YAML config, re-read when its file changes: every consumer asks it (``source()``) when it needs
the config, so one reload reaches them all."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from app.config.model import Config, load_config
from app.core.errors import ConfigError
from app.core.reloading import ReloadingFile


class ConfigSource:
    """The current config, re-read when its file changes (checked at most once per ``min_interval`` seconds).

    An invalid new file keeps the previous config and logs why (``last_error``); an invalid file at start raises
    ``ConfigError``. Without a file (``path`` ``None``) the config is the defaults, for good.
    """

    def __init__(
        self, path: Path | None, *, min_interval: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self._file = (
            ReloadingFile(
                path, load_config, what="config", errors=(ConfigError,), min_interval=min_interval, monotonic=monotonic
            )
            if path is not None
            else None
        )
        self._default = Config()

    @property
    def last_error(self) -> str | None:
        """Why the file's newest content was refused; ``None`` while it is the config in use."""
        return self._file.last_error if self._file is not None else None

    def __call__(self) -> Config:
        return self._file() if self._file is not None else self._default
