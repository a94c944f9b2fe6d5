"""ReloadingFile: re-read on a new (mtime, size) stamp, at most once per interval, the previous value kept when the
new content is invalid; and PolicySource built on it (a path that may be None or change)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from app.core.reloading import ReloadingFile, file_stamp
from app.posture.gate import PolicySource

POLICY = '{"postures": {"posture:trusted": ["node:os == \'macos\'"]}}\n'


class Parser:
    """Parses a file holding one integer; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> int:
        self.calls += 1
        return int(path.read_text())


class Monotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str, stamp: int) -> None:
    """Write ``text`` with a distinct mtime even on file systems with coarse timestamps."""
    path.write_text(text)
    os.utime(path, ns=(stamp * 10**9, stamp * 10**9))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "value.txt"
    write(file, "1", 1)
    return file


def test_reads_at_start_and_again_when_the_stamp_changes(path: Path) -> None:
    parse = Parser()
    source = ReloadingFile(path, parse, min_interval=0)
    assert source() == 1 and source() == 1
    assert parse.calls == 1  # an unchanged stamp is not parsed again
    write(path, "22", 2)
    assert source() == 22
    assert source.last_error is None
    assert parse.calls == 2


def test_an_invalid_file_at_start_raises(path: Path) -> None:
    path.write_text("not a number")
    with pytest.raises(ValueError, match="not a number"):
        ReloadingFile(path, Parser())


def test_the_file_is_looked_at_at_most_once_per_interval(path: Path) -> None:
    clock = Monotonic()
    parse = Parser()
    source = ReloadingFile(path, parse, min_interval=5, monotonic=clock)
    write(path, "2", 2)
    clock.now += 4.9
    assert source() == 1  # within the interval since the start: the change is not seen yet
    clock.now += 0.1
    assert source() == 2
    write(path, "3", 3)
    clock.now += 4.9
    assert source() == 2
    clock.now += 0.1
    assert source() == 3
    assert parse.calls == 3


def test_an_invalid_new_file_keeps_the_previous_value_until_the_file_is_fixed(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    parse = Parser()
    source = ReloadingFile(path, parse, what="number", min_interval=0)
    write(path, "oops", 2)
    with caplog.at_level(logging.INFO, logger="app.core.reloading"):
        assert source() == 1
        assert source() == 1
    assert source.last_error is not None and "oops" in source.last_error
    assert "keeping the previous number" in caplog.text
    assert parse.calls == 2  # the broken content is parsed once, not at every call
    write(path, "7", 3)
    assert source() == 7
    assert source.last_error is None


def test_errors_other_than_the_named_ones_propagate(path: Path) -> None:
    source = ReloadingFile(path, Parser(), errors=(KeyError,), min_interval=0)
    write(path, "oops", 2)
    with pytest.raises(ValueError, match="oops"):
        source()


def test_a_missing_file_keeps_the_value_and_is_read_when_it_returns(path: Path) -> None:
    source = ReloadingFile(path, Parser(), min_interval=0)
    path.unlink()
    assert file_stamp(path) is None
    assert source() == 1
    assert source.last_error is not None and "No such file" in source.last_error
    write(path, "5", 5)
    assert source() == 5
    assert source.last_error is None


def test_an_initial_value_is_served_until_a_first_good_read(path: Path) -> None:
    path.write_text("not yet")
    parse = Parser()
    source: ReloadingFile[int | None] = ReloadingFile(path, parse, initial=None, min_interval=0)
    assert parse.calls == 0  # nothing read at construction
    assert source.current is None
    assert source() is None and source() is None
    assert source.last_error is not None
    assert parse.calls == 1
    write(path, "3", 3)
    assert source() == 3 and source.current == 3


def test_concurrent_callers_parse_one_change_once(path: Path) -> None:
    parse = Parser()
    source = ReloadingFile(path, parse, min_interval=0)
    write(path, "9", 9)
    barrier = threading.Barrier(8)
    seen: list[int] = []

    def call() -> None:
        barrier.wait()
        seen.append(source())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert seen == [9] * 8
    assert parse.calls == 2


# -- PolicySource: the policy file named by the config --------------------------------------------------------


def test_policy_source_without_a_path_has_no_policy(tmp_path: Path) -> None:
    assert PolicySource(lambda: None)() is None


def test_policy_source_follows_a_changing_path_and_keeps_the_last_good_policy(tmp_path: Path) -> None:
    good, broken = tmp_path / "good.hujson", tmp_path / "broken.hujson"
    good.write_text(POLICY)
    broken.write_text("{ not json")
    current: list[Path | None] = [broken]
    source = PolicySource(lambda: current[0], min_interval=0)

    assert source() is None  # a broken file at start does not raise: no policy yet, and why
    assert source.last_error is not None and "broken.hujson" in source.last_error
    current[0] = good
    policy = source()
    assert policy is not None and "posture:trusted" in policy.postures
    assert source.last_error is None
    current[0] = broken
    assert source() is policy  # the previous policy stays while the new path's file is broken
    assert source.last_error is not None
    current[0] = None
    assert source() is None
    current[0] = tmp_path / "missing.hujson"
    assert source() is policy
    assert source.last_error is not None and "missing.hujson" in source.last_error
