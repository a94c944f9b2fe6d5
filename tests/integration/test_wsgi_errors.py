"""gunicorn with a setting or environment problem: one line naming it, no traceback, and the master stops
(worker boot error) instead of restarting workers that would fail the same way."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"DATABASE_URL": "sqlite:///{tmp}/missing-dir/accessbot.db"}, "missing-dir"),
        ({"ACCESSBOT_CONFIG": "{tmp}/none.yml"}, "cannot read config file"),
    ],
    ids=["database", "config"],
)
def test_gunicorn_with_a_problem_it_cannot_fix_stops_with_one_line(
    tmp_path: Path, setting: dict[str, str], named: str
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "ACCESSBOT_CONFIG"},
        "DATABASE_URL": f"sqlite:///{tmp_path}/accessbot.db",
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "secret",
        **{key: value.format(tmp=tmp_path) for key, value in setting.items()},
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.run(
        [str(gunicorn), "--chdir", str(ROOT), "-b", f"127.0.0.1:{free_port()}", "app.wsgi:application"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 3  # gunicorn's "worker failed to boot": the master shut down
    ours = [line for line in proc.stderr.splitlines() if line.startswith("accessbot:")]
    assert len(ours) == 1 and named in ours[0], proc.stderr
    assert "Traceback" not in proc.stderr
