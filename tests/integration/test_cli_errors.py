"""Issue 13 part C: environment problems are one line (cause + what to check), exit 2, never a traceback; and the
CLI's polish (--version, completion, strict values, listen defaults, no side effects of read-only commands)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from slack_sdk import WebClient

from app.core.clock import FrozenClock
from app.core.crypto import KEY_FILE_NAME
from tests.clitools import Run, cli_environment, failed, invoker, ok
from tests.conftest import PG_URL
from tests.fakes.slack_api import FakeSlackAPI

PG_SERVER = ("127.0.0.1", 5432)
BOT_TOKEN = "xoxb-13-errors-test"
SIGNING_SECRET = "errors-test-signing-secret"


def free_port() -> int:
    """A port nothing listens on (bound and released: connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def occupied_port() -> Iterator[int]:
    """A port another socket is listening on for the length of the block."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def pg_reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(PG_SERVER, timeout=1):
        return True
    return False


def clean_env(**values: str) -> dict[str, str]:
    """The process environment without any accessbot, Slack or Tailscale setting, plus ``values``."""
    prefixes = ("SLACK_", "TAILSCALE_", "ACCESSBOT_", "METRICS_", "LOG_", "DATABASE_URL", "PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(NO_PROXY="127.0.0.1", **values)
    return env


def accessbot(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def one_error_line(proc: subprocess.CompletedProcess[str], *fragments: str, code: int = 2) -> str:
    """Assert the process failed with ``code`` and exactly one ``error:`` line on stderr holding every fragment."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr, proc.stdout)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- the database -------------------------------------------------------------------------------------


def unwritable_directory(tmp_path: Path) -> Path:
    """A directory this process may not create files in (root ignores modes: then a sysfs directory)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    candidate = Path("/sys")
    try:
        os.close(os.open(candidate / "accessbot-probe.db", os.O_RDWR | os.O_CREAT, 0o600))
    except OSError:
        return candidate
    pytest.skip("no directory here refuses a new file to root")


def test_garbage_database_url(tmp_path: Path) -> None:
    proc = accessbot(["devices", "list"], clean_env(DATABASE_URL="garbage"), tmp_path)
    line = one_error_line(proc, "DATABASE_URL is not a database URL", "sqlite:///", "postgresql://")
    assert "garbage" not in line  # the value is not echoed: a URL may hold a password


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite(tmp_path: Path, url: str) -> None:
    one_error_line(accessbot(["devices", "list"], clean_env(DATABASE_URL=url), tmp_path), "in-memory SQLite")


def test_an_unsupported_database(tmp_path: Path) -> None:
    proc = accessbot(["devices", "list"], clean_env(DATABASE_URL="mysql://root:hunter2@db/app"), tmp_path)
    line = one_error_line(proc, "does not support", "'mysql'")
    assert "hunter2" not in line


def test_sqlite_in_a_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "accessbot.db"
    proc = accessbot(["devices", "list"], clean_env(DATABASE_URL=f"sqlite:///{path}"), tmp_path)
    one_error_line(proc, str(path), f"the directory {path.parent} does not exist", "DATABASE_URL")
    assert not path.parent.exists()


def test_sqlite_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a directory")
    path = tmp_path / "plain" / "accessbot.db"
    proc = accessbot(["devices", "list"], clean_env(DATABASE_URL=f"sqlite:///{path}"), tmp_path)
    one_error_line(proc, str(path), "is not a directory")


def test_sqlite_in_a_read_only_directory(tmp_path: Path) -> None:
    directory = unwritable_directory(tmp_path)
    path = directory / "accessbot.db"
    proc = accessbot(["devices", "list"], clean_env(DATABASE_URL=f"sqlite:///{path}"), tmp_path)
    one_error_line(proc, str(path), "Permission denied", f"make the directory {directory} writable")
    assert not path.exists()


@pytest.mark.parametrize("command", [["devices", "list"], ["db", "current"], ["audit"]])
def test_a_corrupted_sqlite_file(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "accessbot.db"
    path.write_bytes(b"this is no database, just some garbage bytes " * 100)
    proc = accessbot(command, clean_env(DATABASE_URL=f"sqlite:///{path}"), tmp_path)
    one_error_line(proc, str(path), "not a usable SQLite database", "file is not a database", "backup")


def test_postgresql_on_a_closed_port(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://accessbot:secret-pw@127.0.0.1:{port}/accessbot"
    for command in (["devices", "list"], ["db", "upgrade"]):
        proc = accessbot(command, clean_env(DATABASE_URL=url), tmp_path)
        line = one_error_line(proc, f"PostgreSQL at 127.0.0.1:{port}", "connection refused", "DATABASE_URL")
        assert "secret-pw" not in line


@pytest.mark.skipif(not pg_reachable(), reason="no PostgreSQL server on 127.0.0.1:5432")
def test_postgresql_without_the_database(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/accessbot_issue13_no_such_database"
    proc = accessbot(["devices", "list"], clean_env(DATABASE_URL=url), tmp_path)
    one_error_line(
        proc, 'has no database "accessbot_issue13_no_such_database"', "CREATE DATABASE", "accessbot db upgrade"
    )


@pytest.mark.skipif(not pg_reachable(), reason="no PostgreSQL server on 127.0.0.1:5432")
def test_postgresql_with_a_wrong_role(tmp_path: Path) -> None:
    url = "postgresql://accessbot_issue13_no_such_role@127.0.0.1:5432/postgres"
    proc = accessbot(["devices", "list"], clean_env(DATABASE_URL=url), tmp_path)
    one_error_line(proc, 'has no role "accessbot_issue13_no_such_role"', "CREATE ROLE", "DATABASE_URL")


def test_a_busy_sqlite_database_is_still_an_operational_error(tmp_path: Path) -> None:
    """The translated errors keep their SQLAlchemy class, so code catching OperationalError still does."""
    from sqlalchemy.exc import OperationalError

    from app.db import Database
    from app.db.problems import DatabaseUnavailable

    with pytest.raises(OperationalError) as info:
        Database(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    assert isinstance(info.value, DatabaseUnavailable)
    assert "does not exist" in info.value.problem


# -- ports and Slack at start -------------------------------------------------------------------------


@pytest.fixture
def fake_slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(token=BOT_TOKEN) as fake:
        yield fake


def slack_env(db_url: str, api_url: str, **extra: str) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=db_url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=api_url,
        ACCESSBOT_SECRET_KEY="an errors test passphrase",
        **extra,
    )


def test_tailnet_serve_on_a_port_in_use(db_url: str, tmp_path: Path) -> None:
    with occupied_port() as port:
        proc = accessbot(["tailnet", "serve", "--port", str(port)], clean_env(DATABASE_URL=db_url), tmp_path)
    one_error_line(proc, f"cannot listen on 127.0.0.1:{port}", "another process listens there")


def test_serve_on_a_port_in_use(db_url: str, tmp_path: Path, fake_slack: FakeSlackAPI) -> None:
    with occupied_port() as port:
        env = slack_env(db_url, fake_slack.base_url)
        proc = accessbot(["serve", "--no-scheduler", "--port", str(port)], env, tmp_path)
    one_error_line(proc, f"cannot listen on 127.0.0.1:{port}", "another process listens there")


@pytest.mark.parametrize("mode", ["worker", "socket-mode"])
def test_metrics_listener_on_a_port_in_use_stops_before_anything_starts(
    db_url: str, tmp_path: Path, fake_slack: FakeSlackAPI, mode: str
) -> None:
    with occupied_port() as port:
        if mode == "worker":
            env = clean_env(DATABASE_URL=db_url, METRICS_PORT=str(port))
            proc = accessbot(["worker"], env, tmp_path)
        else:
            env = slack_env(db_url, fake_slack.base_url, METRICS_PORT=str(port), SLACK_APP_TOKEN="xapp-1-test")
            proc = accessbot(["serve"], env, tmp_path)
    one_error_line(proc, f"cannot listen on 127.0.0.1:{port}", "another process listens there")
    assert not fake_slack.calls("auth.test")  # the port was checked first


@pytest.mark.parametrize("socket_mode", [False, True], ids=["http", "socket-mode"])
def test_serve_with_slack_unreachable(db_url: str, tmp_path: Path, socket_mode: bool) -> None:
    api_url = f"http://127.0.0.1:{free_port()}/api/"
    extra = {"SLACK_APP_TOKEN": "xapp-1-errors-test"} if socket_mode else {}
    proc = accessbot(["serve", "--port", "0"], slack_env(db_url, api_url, **extra), tmp_path)
    one_error_line(proc, f"cannot reach Slack at {api_url}", "Connection refused", "SLACK_API_URL")
    assert BOT_TOKEN not in proc.stderr


def test_serve_listens_on_loopback_by_default_without_bolts_token_warning(
    db_url: str, tmp_path: Path, fake_slack: FakeSlackAPI
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--no-scheduler", "--port", "0"],
        env=slack_env(db_url, fake_slack.base_url),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "HTTP on" in line:
                break
        banner = seen[-1]
        match = re.search(r"HTTP on (\S+):(\d+)", banner)
        assert match and match.group(1) == "127.0.0.1", seen
        assert httpx.get(f"http://127.0.0.1:{match.group(2)}/healthz", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    output = "".join(seen) + rest
    assert fake_slack.calls("auth.test")
    assert "will be unused" not in output and "will be ignored" not in output, output


def test_bolt_still_warns_when_the_environment_holds_another_token(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the message about the very token our client carries is dropped: a real mix-up is still reported."""
    from slack_bolt import App

    from app.slack.bolt_app import _same_token_not_reported

    logger = logging.getLogger("accessbot.slack")
    client = WebClient(token=BOT_TOKEN)
    caplog.set_level(logging.WARNING, logger="accessbot.slack")
    for env_token, warned in ((BOT_TOKEN, False), ("xoxb-some-other-token", True)):
        caplog.clear()
        monkeypatch.setenv("SLACK_BOT_TOKEN", env_token)
        with _same_token_not_reported(logger, client.token):
            App(client=client, signing_secret=SIGNING_SECRET, token_verification_enabled=False, logger=logger)
        assert ("will be unused" in caplog.text) is warned, caplog.text


def test_metrics_listener_honours_metrics_host(db_url: str, tmp_path: Path) -> None:
    env = clean_env(
        DATABASE_URL=db_url,
        METRICS_PORT="0",
        METRICS_HOST="127.0.0.2",
        ACCESSBOT_SECRET_KEY="an errors test passphrase",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "worker"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        match = re.search(r"metrics on port (\d+) of (\S+)", line)
        assert match and match.group(2) == "127.0.0.2", line
        port = match.group(1)
        assert httpx.get(f"http://127.0.0.2:{port}/healthz", timeout=10).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_metrics_host_defaults_to_loopback() -> None:
    from app.config.settings import Settings

    assert Settings().metrics_host == "127.0.0.1"  # type: ignore[call-arg]


# -- the CLI's polish ---------------------------------------------------------------------------------


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, clock: FrozenClock) -> Run:
    cli_environment(monkeypatch, tmp_path, db_url)
    return invoker(monkeypatch, clock)


def test_version_is_the_installed_package_version(run: Run) -> None:
    assert ok(run("--version")) == f"accessbot {importlib.metadata.version('accessbot')}\n"


def test_completion_script_and_completions(tmp_path: Path) -> None:
    as_installed = [sys.executable, "-c", "import sys; sys.argv[0] = 'accessbot'; from app.cli import main; main()"]
    shown = subprocess.run(
        [*as_installed, "--show-completion", "bash"], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "_accessbot_completion" in shown.stdout and "complete_bash" in shown.stdout
    env = clean_env(_ACCESSBOT_COMPLETE="complete_bash", COMP_WORDS="accessbot attrs s", COMP_CWORD="2")
    completed = subprocess.run(as_installed, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert completed.stdout.split() == ["set"], (completed.stdout, completed.stderr)


def add_laptop(run: Run) -> None:
    ok(run("devices", "add", "--name", "laptop", "--user", "alice@example.com"))


@pytest.mark.parametrize(("text", "stored"), [("TRUE", True), ("True", True), ("false", False), ("FALSE", False)])
def test_booleans_in_any_case(run: Run, text: str, stored: bool) -> None:
    add_laptop(run)
    ok(run("attrs", "set", "laptop", "custom:flag", text))
    assert json.loads(ok(run("attrs", "get", "laptop", "--json")))["attributes"]["custom:flag"] is stored


@pytest.mark.parametrize("text", ["007", "1e3", "0x1f", "1_000", "1.0e5", "1.5"])
def test_number_like_text_is_refused(run: Run, text: str) -> None:
    add_laptop(run)
    failed(run("attrs", "set", "laptop", "custom:n", text), "--string")
    assert "custom:n" not in ok(run("attrs", "get", "laptop", "--json"))
    ok(run("attrs", "set", "laptop", "custom:n", text, "--string"))  # stored as text when asked (a string key)
    assert json.loads(ok(run("attrs", "get", "laptop", "--json")))["attributes"]["custom:n"] == text


def test_plain_integers_are_numbers(run: Run) -> None:
    add_laptop(run)
    ok(run("attrs", "set", "laptop", "custom:n", "--", "-42"))
    assert json.loads(ok(run("attrs", "get", "laptop", "--json")))["attributes"]["custom:n"] == -42


@pytest.mark.parametrize("expiry", ["99999d", "366d", "9999-01-01T00:00:00Z"])
def test_an_expiry_beyond_a_year_is_refused(run: Run, expiry: str) -> None:
    add_laptop(run)
    failed(run("attrs", "set", "laptop", "custom:x", "true", "--expiry", expiry), "more than 365 days ahead")
    assert "custom:x" not in ok(run("attrs", "get", "laptop", "--json"))


def test_an_expiry_of_a_year_is_accepted(run: Run) -> None:
    add_laptop(run)
    assert "in 365d" in ok(run("attrs", "set", "laptop", "custom:x", "true", "--expiry", "365d"))


@pytest.mark.skipif(bool(PG_URL), reason="the key file exists only beside SQLite")
def test_read_only_commands_create_no_key_file(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCESSBOT_SECRET_KEY", raising=False)
    add_laptop(run)
    for command in (["integrations", "list"], ["audit"], ["attrs", "get", "laptop"], ["devices", "list"]):
        ok(run(*command))
        assert not (tmp_path / KEY_FILE_NAME).exists(), command
    ok(run("integrations", "add", "huntress", "--api-key", "k", "--api-secret", "s", "--no-verify"))
    assert (tmp_path / KEY_FILE_NAME).exists()  # storing a secret creates it


def test_sync_errors_are_printed_once(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.vendors import FakeHuntress

    monkeypatch.setenv("ACCESSBOT_SECRET_KEY", "an errors test passphrase")
    with FakeHuntress() as fake:
        ok(
            run(
                "integrations", "add", "huntress", "--api-key", "wrong", "--api-secret", "wrong",
                "--base-url", fake.url, "--no-verify",
            )
        )  # fmt: skip
        result = run("sync")
    assert result.exit_code == 1, result.output
    said = [line for line in result.output.splitlines() if "refused the credentials" in line]
    assert said == [
        "✗ Huntress: Huntress refused the credentials (HTTP 401 Unauthorized: Authentication Failed); check them"
    ]


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "migrated-file"])
def test_a_lock_file_that_cannot_be_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FrozenClock, existing: bool
) -> None:
    """The directory of the SQLite file refuses the lock file (as a read-only directory does, even when the
    database file itself opens): one line naming the lock file, for the WAL switch and for the migration lock."""
    import filelock

    from app.db import Database

    path = tmp_path / "accessbot.db"
    if existing:
        Database(f"sqlite:///{path}").dispose()  # in WAL already: only the migration lock is left to take

    def refuse(self: filelock.FileLock, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", self.lock_file)

    cli_environment(monkeypatch, tmp_path, f"sqlite:///{path}")
    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    line = failed(invoker(monkeypatch, clock)("db", "upgrade"), f"{path}.migrate.lock", "Permission denied")
    assert "must be writable" in line
