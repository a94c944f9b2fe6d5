"""Load: concurrent signed request → approve flows against the web process on 127.0.0.1, with exactly-once checks.

    python bench/load.py [--flows 200] [--server procfile|gunicorn] [--workers 2] [--threads 8]
                         [--rounds 3] [--baseline yes|no|only] [--database-url postgresql://.../fresh_db]

Starts a fake Slack Web API (``tests/fakes/slack_api.py``) in this process, then the web process — the
Procfile's ``accessbot serve --no-scheduler`` (waitress) by default, or ``gunicorn app.wsgi:application`` with
``--server gunicorn`` (production settings: Bolt acks first and works after, ``process_before_response=False``)
— and one ``accessbot worker`` as subprocesses, as the Procfile does, on a fresh database with the built-in tailnet: a
temporary SQLite file by default, or the given PostgreSQL database, which must be empty (it is migrated here;
create it before and drop it after). The config has one profile approved by a user group.

Each flow is one requester with a device of their own; all flows start at the same moment:

* shortcut: the global shortcut (then waits until the modal is opened and filled in);
* options:  a ``block_suggestion`` of the device picker (its answer must offer the requester's device);
* submit:   the ``view_submission`` (then waits for the approver's DM);
* approve:  the approver clicks Approve in that DM (then waits for the requester's "granted" notice).

Reports p50/p99 of each step's HTTP answer (the ack) as the client saw it and, under gunicorn, as gunicorn
measured it (its access log; the difference is time queued for a gunicorn thread and the load generator's own
share of the CPUs), of the whole flow (shortcut sent → granted notice seen, so it includes the work done after
the acks), errors (non-2xx, timeouts, answers slower than Slack's 3 s, flows that never completed) and checks
exactly-once grants in the database and in the fake Slack: one ``Update node attribute`` set event, one
"granted" notification and one granted notice per request, none left in ``granting``, nothing undelivered.
Everything is on loopback; the flows stop after ``--time-limit`` seconds whatever happens, and the script
exits non-zero if any check of accessbot's runs failed.

Each run starts a fresh app; ``--rounds`` runs of accessbot and of the naive baseline alternate (so both see
the same noise), and a table gives the medians side by side: per step the client's and the server's p50/p99
(the server's measured around the WSGI call, by ``bench/load_shim/sitecustomize.py`` under waitress, by the
access log under gunicorn) and the acks later than 3 s. The naive baseline is the same code with delivery as it
was before issue 12 (see that shim): a submission's notifications delivered on the listener pool, one write
transaction per claimed notification and per posted message.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, inspect, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from load_report import STEPS, Flow, Run, report, summary

from app.access.outbox import MAX_ATTEMPTS
from app.db import Database, normalize_url
from app.db.audit import AuditAction, attribute_target
from app.db.migrate import upgrade
from app.db.tables import AuditEventRow
from app.db.tables.access import AccessRequestRow, NotificationRow, RequestStatus
from app.slack.ids import ActionId, BlockId, CallbackId
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Actor
from tests.fakes.slack_api import DEFAULT_TOKEN, Call, FakeSlackAPI, Params
from tests.fakes.slack_payloads import (
    SlackEventsClient,
    block_actions_in_message,
    block_suggestion,
    global_shortcut,
    new_trigger_id,
    select_state,
    text_input_state,
    view_submission,
)

ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / "bench" / "load_shim"
"""``sitecustomize`` of the processes under load: server-side times, and the naive baseline when asked."""
SIGNING_SECRET = "load-bench-signing-secret-0123456789"
ATTRIBUTE = "custom:prodAccess"
GROUP_HANDLE = "approvers"
STEP_HEADER = "X-Bench-Step"
ACCESS_MARK = "BENCH-ACCESS"
CONFIG_YAML = f"""
request_timeout: 1h
reminder_before: 10m
profiles:
  - id: prod
    description: Production access
    attribute: {ATTRIBUTE}
    max_duration: 4h
    durations: [30m, 1h, 4h]
    approvers: ["@{GROUP_HANDLE}"]
    notify_channel: CACCESS
"""
REQUEST_ID = re.compile(r"^Access request #(\d+) ")


# -- the fake Slack, indexed so 200 waiting flows do not rescan every call ------------------------------------


class IndexedSlack(FakeSlackAPI):
    """``FakeSlackAPI`` that also indexes the calls flows wait for: modal opens/updates and messages per channel."""

    def __init__(self) -> None:
        super().__init__(token=DEFAULT_TOKEN)
        self.add_channel("CACCESS", "access-requests")
        self._index: dict[tuple[str, str], list[Call]] = defaultdict(list)
        self._arrived = threading.Condition()

    def _record(self, method: str, params: Params, status: int, response: dict[str, Any]) -> None:
        with self._lock:  # re-entrant: the call just recorded is still the last one
            super()._record(method, params, status, response)
            call = self._calls[-1]
        if status != 200 or not response.get("ok"):
            return
        keys: list[tuple[str, str]] = []
        if method == "views.open":
            keys.append(("open", str(params.get("trigger_id"))))
        elif method == "views.update":
            keys.append(("update", str(params.get("view_id"))))
        elif method == "chat.postMessage":
            keys.append(("post", str(response.get("channel"))))
        with self._arrived:
            for key in keys:
                self._index[key].append(call)
            self._arrived.notify_all()

    def wait(self, kind: str, key: str, match: Callable[[Call], bool], deadline: float) -> Call | None:
        """The first indexed call under (kind, key) for which ``match`` holds; ``None`` at ``deadline``."""
        with self._arrived:
            while True:
                for call in self._index.get((kind, key), ()):
                    if match(call):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._arrived.wait(min(remaining, 1.0))

    def posted(self, channel: str) -> list[Call]:
        with self._arrived:
            return list(self._index.get(("post", channel), ()))


# -- database ---------------------------------------------------------------------------------------------------


@contextmanager
def fresh_database(url: str | None) -> Iterator[tuple[str, str]]:
    """(URL, label) of a migrated, empty database: a temporary SQLite file, or the given PostgreSQL database."""
    if url is None:
        with tempfile.TemporaryDirectory(prefix="accessbot-load-") as tmp:
            sqlite_url = f"sqlite:///{tmp}/load.db"
            db = Database(sqlite_url)
            upgrade(db.engine)
            db.dispose()
            yield sqlite_url, "SQLite (temporary file, WAL)"
        return
    url = normalize_url(url)
    db = Database(url)
    try:
        tables = set(inspect(db.engine).get_table_names())
        if tables - {"alembic_version"}:
            with db.session() as session:
                used = session.scalar(select(func.count()).select_from(AccessRequestRow))
            if used or "devices" not in tables:
                raise SystemExit(f"--database-url must name a fresh, empty database (it has tables: {sorted(tables)})")
        upgrade(db.engine)
    finally:
        db.dispose()
    yield url, f"PostgreSQL ({url.rsplit('/', 1)[-1]})"


# -- the app under load -----------------------------------------------------------------------------------------


@dataclass
class Process:
    """A subprocess whose output (stdout and stderr) is collected line by line."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def count(self, needle: str) -> int:
        return sum(needle in line for line in list(self.lines))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            lines = list(self.lines)
            for line in lines[seen:]:
                match = re.search(pattern, line)
                if match:
                    return match
            seen = len(lines)
            if self.proc.poll() is not None:
                return None
            time.sleep(0.05)
        return None


@contextmanager
def process(name: str, cmd: list[str], env: dict[str, str]) -> Iterator[Process]:
    """Run ``cmd`` from the repository root; SIGTERM (then SIGKILL) at the end."""
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = Process(proc)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            running.lines.append(line)

    threading.Thread(target=pump, name=f"{name}-output", daemon=True).start()
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def gunicorn(env: dict[str, str], workers: int, threads: int) -> Iterator[tuple[Process, str]]:
    """``gunicorn app.wsgi:application`` on 127.0.0.1 (a free port), with an access log of each step's time."""
    binary = str(Path(sys.executable).with_name("gunicorn"))
    cmd = [binary, "--bind", "127.0.0.1:0", "--workers", str(workers), "--threads", str(threads)]
    cmd += ["--timeout", "30", "--graceful-timeout", "5", "--access-logfile", "-"]
    cmd += ["--access-logformat", f"{ACCESS_MARK} %({{{STEP_HEADER.lower()}}}i)s %(s)s %(D)s", "app.wsgi:application"]
    with process("gunicorn", cmd, env) as server:
        match = server.wait_for(r"Listening at: (http://127\.0\.0\.1:\d+)", 30)
        if match is None:
            raise SystemExit("gunicorn did not start:\n" + "".join(server.lines))
        url = match.group(1)
        deadline = time.monotonic() + 30
        while server.count("Booting worker") < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        with httpx.Client(trust_env=False, timeout=5) as http:
            healthy = 0
            while healthy < 2 * workers and time.monotonic() < deadline:
                try:
                    healthy += http.get(f"{url}/healthz").status_code == 200
                except httpx.TransportError:
                    time.sleep(0.2)
        time.sleep(1.0)  # a worker that fails to boot takes the master down within a moment
        if healthy < 2 * workers or server.proc.poll() is not None:
            raise SystemExit("gunicorn is not serving:\n" + "".join(server.lines))
        yield server, url


@contextmanager
def procfile_web(env: dict[str, str], threads: int) -> Iterator[tuple[Process, str]]:
    """The Procfile's ``web``: ``accessbot serve --no-scheduler`` (waitress) on 127.0.0.1, ``HTTP_THREADS``."""
    cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", "0", "--no-scheduler"]
    with process("web", cmd, {**env, "HTTP_THREADS": str(threads)}) as server:
        match = server.wait_for(r"HTTP on (127\.0\.0\.1:\d+)", 30)
        if match is None:
            raise SystemExit("accessbot serve did not start:\n" + "".join(server.lines))
        yield server, f"http://{match.group(1)}"


def server_times(server: Process) -> dict[str, list[float]]:
    """Seconds gunicorn spent on each request, by the step the bench named in its header."""
    out: dict[str, list[float]] = defaultdict(list)
    for line in list(server.lines):
        parts = line.split()
        if len(parts) == 4 and parts[0] == ACCESS_MARK and parts[1] in STEPS:
            out[parts[1]].append(int(parts[3]) / 1e6)
    return out


# -- one flow (its record: load_report.Flow) ------------------------------------------------------------------


class Load:
    def __init__(self, fake: IndexedSlack, url: str, deadline: float, http_timeout: float) -> None:
        self.fake = fake
        self.url = url
        self.deadline = deadline
        self.http_timeout = http_timeout
        self.checking = 0
        """Submissions acknowledged with the "checking" view (their check outlived the ack budget)."""

    def post(self, client: SlackEventsClient, flow: Flow, step: str, body: str) -> httpx.Response | None:
        flow.stage = step
        start = time.perf_counter()
        try:
            response = client.post(body, headers={STEP_HEADER: step})
        except httpx.TimeoutException:
            flow.error = f"{step}: no answer within {self.http_timeout:.0f} s"
            return None
        except httpx.TransportError as exc:
            flow.error = f"{step}: {type(exc).__name__}: {exc}"
            return None
        flow.latencies[step] = time.perf_counter() - start
        if not response.is_success:
            flow.error = f"{step}: HTTP {response.status_code} {response.text[:120]}"
            return None
        return response

    def wait(self, flow: Flow, what: str, kind: str, key: str, match: Callable[[Call], bool]) -> Call | None:
        flow.stage = f"waiting for {what}"
        call = self.fake.wait(kind, key, match, self.deadline)
        if call is None:
            flow.error = f"time limit reached while waiting for {what}"
        return call

    def run(self, flow: Flow, start: threading.Barrier) -> None:
        # ack_deadline=None: measure every answer, however late (the report counts those over 3 s)
        with SlackEventsClient(self.url, SIGNING_SECRET, timeout=self.http_timeout, ack_deadline=None) as client:
            try:
                start.wait()
            except threading.BrokenBarrierError:
                flow.error = "not started"
                return
            began = time.perf_counter()
            try:
                self.flow(client, flow)
            except Exception as exc:  # a bench must report, not die, when a flow goes wrong
                flow.error = f"{flow.stage}: {type(exc).__name__}: {exc}"
            if flow.error is None:
                flow.total = time.perf_counter() - began
                flow.stage = "done"

    def flow(self, client: SlackEventsClient, flow: Flow) -> None:
        user, fake = flow.requester, self.fake
        trigger = new_trigger_id()
        if self.post(client, flow, "shortcut", global_shortcut(CallbackId.REQUEST_SHORTCUT, user, trigger)) is None:
            return
        opened = self.wait(flow, "views.open", "open", trigger, lambda c: True)
        if opened is None:
            return
        view_id = opened.response["view"]["id"]
        if self.wait(flow, "views.update (profile filled in)", "update", view_id, lambda c: True) is None:
            return
        view = fake.view(view_id)

        typed = flow.device_name.split(".", 1)[0][:8]
        body = block_suggestion(ActionId.DEVICE_SELECT, BlockId.DEVICE, typed, user, view=view)
        answer = self.post(client, flow, "options", body)
        if answer is None:
            return
        offered = [o["value"] for g in answer.json().get("option_groups", []) for o in g["options"]]
        if flow.device_id not in offered:
            flow.error = f"options: the requester's device is not offered (got {offered[:5]})"
            return

        state = {
            BlockId.PROFILE: {ActionId.PROFILE_SELECT: select_state("prod")},
            BlockId.DEVICE: {ActionId.DEVICE_SELECT: select_state(flow.device_id, element_type="external_select")},
            BlockId.DURATION: {ActionId.DURATION_SELECT: select_state("3600")},
            BlockId.APPROVER: {ActionId.APPROVER_SELECT: select_state(flow.approver)},
            BlockId.REASON: {ActionId.REASON_INPUT: text_input_state(f"load flow {flow.index}")},
        }
        submitted = self.post(client, flow, "submit", view_submission(CallbackId.REQUEST_MODAL, user, state, view=view))
        if submitted is None:
            return
        if submitted.text and '"response_action": "update"' not in submitted.text:
            flow.error = f"submit: answered {submitted.text[:160]}"
            return
        if submitted.text:  # acknowledged with the "checking" view: the outcome follows in the modal
            self.checking += 1
        mine = self.wait(
            flow, "the requester's copy", "post", f"D{user}", lambda c: REQUEST_ID.match(c.params.get("text", ""))
        )
        if mine is None:
            return
        match = REQUEST_ID.match(mine.params["text"])
        assert match is not None
        flow.request_id = request_id = int(match.group(1))
        prefix = f"Access request #{request_id} "
        dm = self.wait(
            flow,
            "the approver's DM",
            "post",
            f"D{flow.approver}",
            lambda c: c.params.get("text", "").startswith(prefix),
        )
        if dm is None:
            return
        channel, ts = dm.response["channel"], dm.response["ts"]
        body = block_actions_in_message(
            ActionId.APPROVE,
            str(request_id),
            flow.approver,
            channel,
            ts,
            response_url=fake.response_url_for(f"approve-{request_id}"),
            message=fake.message(channel, ts),
        )
        if self.post(client, flow, "approve", body) is None:
            return
        self.wait(flow, "the granted notice", "post", f"D{user}", lambda c: "granted until" in c.params.get("text", ""))


# -- reporting --------------------------------------------------------------------------------------------------


def check_exactly_once(db: Database, fake: IndexedSlack, flows: list[Flow]) -> list[str]:
    """Every flow's request granted exactly once; returns the violations."""
    problems: list[str] = []
    with db.session() as session:
        rows = {r.requester_id: r for r in session.scalars(select(AccessRequestRow))}
        per_requester = Counter(session.scalars(select(AccessRequestRow.requester_id)))
        sets = Counter(
            event.target
            for event in session.scalars(
                select(AuditEventRow).where(AuditEventRow.action == AuditAction.UPDATE_NODE_ATTRIBUTE)
            )
            if (event.details or {}).get("change") == "set"
        )
        granted_notes = Counter(
            session.scalars(select(NotificationRow.request_id).where(NotificationRow.kind == "granted"))
        )
        granting = session.scalar(
            select(func.count()).select_from(AccessRequestRow).where(AccessRequestRow.status == RequestStatus.GRANTING)
        )
        undelivered = list(
            session.execute(
                select(NotificationRow.request_id, NotificationRow.kind, NotificationRow.last_error).where(
                    NotificationRow.sent_at.is_(None), NotificationRow.attempts < MAX_ATTEMPTS
                )
            )
        )
    if granting:
        problems.append(f"{granting} requests left in granting")
    for request_id, kind, last_error in undelivered:
        problems.append(f"request {request_id}: notification {kind!r} undelivered ({last_error})")
    for flow in flows:
        row = rows.get(flow.requester)
        if row is None:
            if flow.latencies.get("submit") is not None:
                problems.append(f"flow {flow.index}: submitted but no request stored")
            continue
        if per_requester[flow.requester] != 1:
            problems.append(f"flow {flow.index}: {per_requester[flow.requester]} requests stored")
        writes = sets[attribute_target(flow.device_id, ATTRIBUTE)]
        notices = sum("granted until" in c.params.get("text", "") for c in fake.posted(f"D{flow.requester}"))
        if flow.latencies.get("approve") is None and row.status == RequestStatus.PENDING:
            continue  # never approved (reported as an error of its flow)
        if row.status != RequestStatus.GRANTED or writes != 1 or granted_notes[row.id] != 1 or notices != 1:
            problems.append(
                f"flow {flow.index} (request {row.id}): status {row.status}, {writes} attribute writes, "
                f"{granted_notes[row.id]} granted notifications, {notices} granted notices"
            )
    return problems


# -- main -------------------------------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by these processes and their children (Linux ``/proc``)."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


def granting_count(db: Database) -> int:
    with db.session() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(AccessRequestRow)
                .where(AccessRequestRow.status == RequestStatus.GRANTING)
            )
            or 0
        )


def deferred_notices(db: Database) -> int:
    """Granted notifications that needed more than one delivery attempt (the worker delivered them)."""
    with db.session() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(NotificationRow)
                .where(NotificationRow.kind == "granted", NotificationRow.attempts > 1)
            )
            or 0
        )


def seed(db: Database, fake: IndexedSlack, flows: int, approver_count: int) -> list[Flow]:
    """One requester with a device of their own per flow, the approver group, all known to the fake Slack."""
    builtin, setup = BuiltinTailnet(db), Actor("cli:bench")
    approvers = [f"UAPPR{a:03d}" for a in range(approver_count)]
    seeded = []
    for i in range(flows):
        name = f"load{i:04d}-laptop.tail1.ts.net"
        device = builtin.add_device(name=name, user=f"user{i}@load.example.com", os="linux", actor=setup)
        seeded.append(Flow(i, f"UREQ{i:04d}", approvers[i % len(approvers)], device.id, name))
        fake.add_user(f"UREQ{i:04d}", f"user{i}@load.example.com", f"user{i}")
    for a, approver in enumerate(approvers):
        fake.add_user(approver, f"approver{a}@load.example.com", f"approver{a}")
    fake.add_group("S0APPROVERS", GROUP_HANDLE, approvers)
    return seeded


def app_env(url: str, tmp: Path, fake: IndexedSlack, naive: bool) -> dict[str, str]:
    """The environment of the processes under load (the shim on ``PYTHONPATH``; see ``load_shim``)."""
    config = tmp / "accessbot.yml"
    config.write_text(CONFIG_YAML)
    (tmp / "metrics").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TAILSCALE_"))}
    env.update(
        DATABASE_URL=url,
        ACCESSBOT_CONFIG=str(config),
        ACCESSBOT_SECRET_KEY="load bench credentials passphrase",
        SLACK_BOT_TOKEN=DEFAULT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=fake.base_url,
        NO_PROXY="127.0.0.1",
        PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"),  # several workers share their metrics
        PYTHONPATH=os.pathsep.join(filter(None, [str(SHIM), env.get("PYTHONPATH")])),
        ACCESSBOT_LOAD_BENCH="1",
        ACCESSBOT_LOAD_NAIVE="1" if naive else "0",
    )
    return env


def drive(load: Load, flows: list[Flow], app_pids: list[int], args: argparse.Namespace) -> tuple[float, float, float]:
    """Start every flow at the same moment and wait for them: (seconds, app CPU seconds, bench CPU seconds)."""
    barrier = threading.Barrier(len(flows) + 1)
    threads = [
        threading.Thread(target=load.run, args=(flow, barrier), name=f"flow-{flow.index}", daemon=True)
        for flow in flows
    ]
    for thread in threads:
        thread.start()
    cpu_app, cpu_bench = cpu_seconds(app_pids), time.process_time()
    barrier.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join(max(0.0, load.deadline + args.http_timeout + 1 - time.monotonic()))
    return time.monotonic() - began, cpu_seconds(app_pids) - cpu_app, time.process_time() - cpu_bench


def one_run(args: argparse.Namespace, naive: bool) -> Run:
    """Start the app (fresh database) and drive every flow once; ``naive`` runs the baseline (see ``load_shim``)."""
    started = time.monotonic()
    variant = "naive" if naive else "accessbot"
    web = (
        f"gunicorn {args.workers} workers x {args.threads} threads"
        if args.server == "gunicorn"
        else f"accessbot serve (waitress, {args.threads} threads; the Procfile's web)"
    )
    with (
        fresh_database(args.database_url) as (url, label),
        tempfile.TemporaryDirectory() as tmp,
        IndexedSlack() as fake,
    ):
        db = Database(url)
        flows = seed(db, fake, args.flows, args.approvers)
        print(
            f"[{variant}] {label}: {args.flows} concurrent flows; {web} + accessbot worker; fake Slack and clients "
            f"in this process; {os.cpu_count()} CPUs"
        )
        env = app_env(url, Path(tmp), fake, naive)
        web_server = (
            gunicorn(env, args.workers, args.threads) if args.server == "gunicorn" else procfile_web(env, args.threads)
        )
        with (
            web_server as (server, server_url),
            process("worker", [sys.executable, "-m", "app", "worker"], env) as worker,
        ):
            if worker.wait_for(r"running jobs", 30) is None:
                raise SystemExit("accessbot worker did not start:\n" + "".join(worker.lines))
            if not server.wait_for(r"loaded \d+ workspace members", 30):
                print("  note: the web process did not say it loaded the workspace's members")
            print(f"  app up at {server_url} after {time.monotonic() - started:.1f} s")
            load = Load(fake, server_url, time.monotonic() + args.time_limit, args.http_timeout)
            users_info_before = len(fake.calls("users.info"))
            took, cpu_app, cpu_bench = drive(load, flows, [server.proc.pid, worker.proc.pid], args)
            users_info = len(fake.calls("users.info")) - users_info_before
            settle = time.monotonic() + 10  # a grant acked but still being written finishes (or not) now
            while granting_count(db) and time.monotonic() < settle:
                time.sleep(0.2)
            logs = [*server.lines, *worker.lines]
            if args.server_log:
                with args.server_log.open("a") as out:
                    out.write(f"==== {variant}\n" + "".join(logs))
        run = Run(
            variant=variant,
            flows=flows,
            served=server_times(server),
            took=took,
            problems=check_exactly_once(db, fake, flows),
            locked=sum("database is locked" in line for line in logs),
            tracebacks=sum("Traceback" in line for line in logs),
            log_errors=sum(" ERROR " in line or "[ERROR]" in line for line in logs),
            deferred=deferred_notices(db),
            slack_calls=len(fake.calls()),
            users_info=users_info,
            cpu_app=cpu_app,
            cpu_bench=cpu_bench,
            checking=load.checking,
        )
        db.dispose()
    report(run)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=200, help="concurrent request → approve flows (default 200)")
    parser.add_argument("--approvers", type=int, default=10, help="members of the approver group (default 10)")
    parser.add_argument(
        "--server",
        choices=("procfile", "gunicorn"),
        default="procfile",
        help="procfile: the Procfile's web (accessbot serve on waitress, one process); gunicorn: app.wsgi:application",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per server process (default 8)")
    parser.add_argument("--time-limit", type=float, default=90.0, help="seconds the flows may take (default 90)")
    parser.add_argument("--http-timeout", type=float, default=15.0, help="client timeout per request (default 15 s)")
    parser.add_argument("--database-url", help="a fresh, empty PostgreSQL database to use instead of SQLite")
    parser.add_argument("--server-log", type=Path, help="append gunicorn's and the worker's output to this file")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant; medians reported (default 3)")
    parser.add_argument(
        "--baseline", choices=("yes", "no", "only"), default="yes", help="also run the naive baseline (default yes)"
    )
    args = parser.parse_args()
    if not 1 <= args.flows <= 1000 or not 1 <= args.approvers <= 100 or not 1 <= args.rounds <= 9:
        parser.error("--flows must be 1..1000, --approvers 1..100 and --rounds 1..9")
    if not 1 <= args.workers <= 16 or not 1 <= args.threads <= 64 or not 5 <= args.time_limit <= 150:
        parser.error("--workers must be 1..16, --threads 1..64 and --time-limit 5..150")
    if args.database_url and not normalize_url(args.database_url).startswith("postgresql"):
        parser.error("--database-url must be a PostgreSQL URL")
    if args.database_url and args.rounds * (1 + (args.baseline == "yes")) > 1:
        parser.error("--database-url takes one fresh database: use --rounds 1 and --baseline no or only")

    started = time.monotonic()
    variants = {"yes": (False, True), "no": (False,), "only": (True,)}[args.baseline]
    runs = [one_run(args, naive) for _ in range(args.rounds) for naive in variants]  # interleaved: same noise
    summary(runs)
    print(f"total {time.monotonic() - started:.1f} s")
    if not all(run.ok for run in runs if run.variant == "accessbot"):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
