"""Notice delivery against real receivers: an SMTP server (aiosmtpd), an HTTP webhook, SQLite and PostgreSQL
ledgers, and a batch process killed with SIGKILL."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.unit.test_notices import (
    EXAMPLE,
    INCIDENT,
    Results,
    contact_data,
    example,
    make_refs,
    render,
    unknown_ref,
)
from trail.notices.channels import OutboxChannel, SmtpChannel, WebhookChannel, make_channel
from trail.notices.errors import BatchBusy, ChannelError
from trail.notices.ledger import NoticeLedger
from trail.notices.model import ContactResolver, message_id, notice_id_for
from trail.notices.resolvers import load_resolver
from trail.notices.runner import batch_status, in_doubt_refs, plan_batch, run_batch
from trail.testing import capture_logs

PG_DSN = os.environ.get("TRAIL_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
SENDER = "notices@corp.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def resolver() -> ContactResolver:
    return load_resolver(f"{EXAMPLE}:ExampleResolver")


@pytest.fixture()
def sqlite_ledger(tmp_path: Path) -> Iterator[NoticeLedger]:
    with NoticeLedger.sqlite(tmp_path / "incidents.db") as led:
        yield led


@contextlib.contextmanager
def postgres_ledger() -> Iterator[NoticeLedger]:
    import psycopg

    schema = f"t_notices_{uuid.uuid4().hex[:12]}"
    led = NoticeLedger.postgres(PG_DSN, schema)
    try:
        yield led
    finally:
        led.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NoticeLedger]:
    """The same behaviour, on each ledger backend."""
    if request.param == "sqlite":
        with NoticeLedger.sqlite(tmp_path / "incidents.db") as led:
            yield led
    else:
        with postgres_ledger() as led:
            yield led


def emails(refs: list[str]) -> dict[str, str]:
    return {ref: example.fake_contact(ref)["email"] for ref in refs}


# -- SMTP -----------------------------------------------------------------------------------
class SmtpCollector:
    """An aiosmtpd handler: keeps messages, refuses some recipients (echoing the address, as servers do)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes, Any]] = []
        self.reject: set[str] = set()
        self.tempfail_once: set[str] = set()
        self._tempfailed: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address in self.tempfail_once and address not in self._tempfailed:
            self._tempfailed.add(address)
            return f"451 4.7.1 <{address}>: greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content), session.peer))
        return "250 Message accepted"

    def by_recipient(self) -> dict[str, list[email.message.EmailMessage]]:
        out: dict[str, list[email.message.EmailMessage]] = {}
        for rcpts, content, _ in self.messages:
            msg = email.message_from_bytes(content, policy=email.policy.default)
            for r in rcpts:
                out.setdefault(r, []).append(msg)  # type: ignore[arg-type]
        return out


@contextlib.contextmanager
def smtp_server(**kwargs: Any) -> Iterator[tuple[SmtpCollector, int]]:
    handler = SmtpCollector()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_smtp_delivers_one_message_per_person_in_their_language(
    sqlite_ledger: NoticeLedger, resolver: ContactResolver
) -> None:
    """Every recipient gets exactly one message, Message-ID = notice id, zh or en as asked, over one connection."""
    refs = make_refs(30)
    with smtp_server() as (server, port):
        channel = make_channel(f"smtp://127.0.0.1:{port}?sender={SENDER}", Path("unused"))
        batch = plan_batch(sqlite_ledger, INCIDENT, refs, "smtp")
        with contextlib.closing(channel):
            summary = run_batch(sqlite_ledger, batch, resolver=resolver, channel=channel, render=render)
        received = server.by_recipient()
        peers = {peer for _, _, peer in server.messages}
    assert (summary.sent, summary.failed, summary.finished) == (30, 0, True)
    assert len(peers) == 1  # one connection for the whole batch
    assert sorted(received) == sorted(emails(refs).values())
    languages = set()
    for ref, address in emails(refs).items():
        [msg] = received[address]
        contact = example.fake_contact(ref)
        assert msg["Message-ID"] == message_id(notice_id_for(INCIDENT, ref))
        assert msg["From"] == SENDER
        assert contact["language"] == msg["Content-Language"][:2]
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        expected = f"Dear {contact['name']}" if contact["language"] == "en" else f"尊敬的{contact['name']}"
        assert text.startswith(expected)
        assert msg.get_body(("html",)) is not None
        assert "X-Trail-Ref" not in msg  # internal headers stay in the organisation's outbox
        languages.add(contact["language"])
    assert languages == {"zh", "en"}


def test_smtp_refusals_are_permanent_and_greylisting_is_retried(
    sqlite_ledger: NoticeLedger, resolver: ContactResolver
) -> None:
    """550 fails for good, 451 is retried and then delivered; the server's text (with the address) is not kept."""
    refs = make_refs(10)
    addresses = emails(refs)
    with smtp_server() as (server, port):
        server.reject = {addresses[refs[1]], addresses[refs[2]]}
        server.tempfail_once = {addresses[refs[3]]}
        channel = SmtpChannel("127.0.0.1", port, SENDER)
        batch = plan_batch(sqlite_ledger, INCIDENT, [*refs, unknown_ref(1)], "smtp")
        results = Results()
        with capture_logs("debug") as logs, contextlib.closing(channel):
            summary = run_batch(
                sqlite_ledger,
                batch,
                resolver=resolver,
                channel=channel,
                render=render,
                on_result=results,
                retry_backoff_s=0,
            )
        received = server.by_recipient()
    assert (summary.sent, summary.failed, summary.retryable, summary.finished) == (8, 3, 0, True)
    assert all(len(received[addresses[r]]) == 1 for r in refs if r not in (refs[1], refs[2]))
    assert addresses[refs[1]] not in received
    outcomes = {(r.subject_ref, r.status, r.attempt, r.error, r.retryable) for r in results.items}
    assert (refs[1], "failed", 1, "smtp recipient 550 5.1.1", False) in outcomes
    assert (refs[3], "failed", 1, "smtp recipient 451 4.7.1", True) in outcomes
    assert (refs[3], "sent", 2, None, False) in outcomes
    assert (unknown_ref(1), "failed", 1, "no contact", False) in outcomes
    stored = json.dumps(sqlite_ledger.dump(), default=str)
    for secret in contact_data(refs):
        assert secret not in stored
        assert secret not in logs.getvalue()


def test_smtp_reconnects_after_the_server_dropped_an_idle_connection(
    sqlite_ledger: NoticeLedger, resolver: ContactResolver
) -> None:
    """A connection the server closed while idle is replaced before the next message, which goes out at once."""
    refs = make_refs(4)
    with smtp_server(timeout=0.3) as (server, port):
        channel = SmtpChannel("127.0.0.1", port, SENDER, idle_check_s=0.1)
        first = plan_batch(sqlite_ledger, INCIDENT, refs[:2], "smtp")
        assert run_batch(sqlite_ledger, first, resolver=resolver, channel=channel, render=render).sent == 2
        time.sleep(0.8)  # the server times the idle connection out
        second = plan_batch(sqlite_ledger, "inc-2026-0002", refs[2:], "smtp")
        results = Results()
        summary = run_batch(sqlite_ledger, second, resolver=resolver, channel=channel, render=render, on_result=results)
        channel.close()
        peers = {peer for _, _, peer in server.messages}
    assert summary.sent == 2 and {r.attempt for r in results.items} == {1}
    assert len(peers) == 2


def test_smtp_login_refused_stops_the_batch(sqlite_ledger: NoticeLedger, resolver: ContactResolver) -> None:
    """Wrong credentials raise a ChannelError (without the password) after one notice; the rest stay pending."""

    def deny(*_: Any) -> AuthResult:
        return AuthResult(success=False, handled=False)

    refs = make_refs(5)
    with smtp_server(authenticator=deny, auth_require_tls=False) as (_, port):
        channel = make_channel(f"smtp://bob:wr0ng-pw@127.0.0.1:{port}?sender={SENDER}", Path("unused"))
        batch = plan_batch(sqlite_ledger, INCIDENT, refs, "smtp")
        with pytest.raises(ChannelError) as info:
            run_batch(sqlite_ledger, batch, resolver=resolver, channel=channel, render=render)
    assert "refused the login" in str(info.value) and "wr0ng-pw" not in str(info.value)
    counts = batch_status(sqlite_ledger, batch).counts
    assert (counts["retryable"], counts["pending"]) == (1, 4)


# -- webhook --------------------------------------------------------------------------------
class WebhookReceiver:
    """A real HTTP server in a thread; per subject ref it can fail with 500 once or refuse with 400."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.fail_once: set[str] = set()
        self.refuse: set[str] = set()
        self._failed: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ref = body["subject_ref"]
                with receiver._lock:
                    receiver.requests.append((dict(self.headers), body))
                    if ref in receiver.refuse:
                        status = 400
                    elif ref in receiver.fail_once and ref not in receiver._failed:
                        receiver._failed.add(ref)
                        status = 500
                    else:
                        status = 200
                reply = json.dumps({"error": f"cannot reach {body['contact']['email']}"} if status != 200 else {})
                data = reply.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Bodies the receiver answered 200 to."""
        out = []
        counts: dict[str, int] = {}
        for _, body in self.requests:
            ref = body["subject_ref"]
            counts[ref] = counts.get(ref, 0) + 1
            first_failed = ref in self._failed and counts[ref] == 1
            if ref not in self.refuse and not first_failed:
                out.append(body)
        return out


def test_webhook_posts_each_notice_with_its_idempotency_key(
    sqlite_ledger: NoticeLedger, resolver: ContactResolver
) -> None:
    """500 is retried then delivered, 400 fails for good; each notice carries Idempotency-Key = notice id."""
    refs = make_refs(8)
    with WebhookReceiver() as receiver:
        receiver.fail_once = {refs[0]}
        receiver.refuse = {refs[1]}
        channel = make_channel(f"webhook:http://127.0.0.1:{receiver.port}/notify", Path("unused"))
        batch = plan_batch(sqlite_ledger, INCIDENT, refs, "webhook")
        results = Results()
        with capture_logs("debug") as logs:
            summary = run_batch(
                sqlite_ledger,
                batch,
                resolver=resolver,
                channel=channel,
                render=render,
                on_result=results,
                retry_backoff_s=0,
            )
    assert (summary.sent, summary.failed, summary.retryable, summary.finished) == (7, 1, 0, True)
    assert len(receiver.requests) == 9  # 8 + one retry
    for headers, body in receiver.requests:
        assert headers["Idempotency-Key"] == body["notice_id"] == notice_id_for(INCIDENT, body["subject_ref"])
        assert headers["Content-Type"].startswith("application/json")
        assert set(body) == {
            "notice_id",
            "incident_id",
            "subject_ref",
            "language",
            "subject",
            "body_text",
            "body_html",
            "contact",
        }
        expected = example.fake_contact(body["subject_ref"])
        assert body["contact"] == {k: expected[k] for k in ("email", "phone", "name", "language")}
        assert body["language"] == expected["language"]
    assert sorted(b["subject_ref"] for b in receiver.delivered) == sorted(set(refs) - {refs[1]})
    outcomes = {(r.subject_ref, r.status, r.attempt, r.error, r.retryable) for r in results.items}
    assert (refs[0], "failed", 1, "webhook answered HTTP 500", True) in outcomes
    assert (refs[0], "sent", 2, None, False) in outcomes
    assert (refs[1], "failed", 1, "webhook answered HTTP 400", False) in outcomes
    stored = json.dumps(sqlite_ledger.dump(), default=str)
    for secret in contact_data(refs):
        assert secret not in stored and secret not in logs.getvalue()


def test_webhook_down_then_up_resumes_without_duplicates(
    sqlite_ledger: NoticeLedger, resolver: ContactResolver
) -> None:
    """With nothing listening every attempt fails retryably; once the receiver is up the batch completes, once each."""
    refs = make_refs(6)
    port = free_port()
    channel = WebhookChannel(f"http://127.0.0.1:{port}/notify", timeout=2)
    batch = plan_batch(sqlite_ledger, INCIDENT, refs, "webhook")
    results = Results()
    summary = run_batch(
        sqlite_ledger,
        batch,
        resolver=resolver,
        channel=channel,
        render=render,
        on_result=results,
        max_attempts=2,
        retry_backoff_s=0,
    )
    assert (summary.sent, summary.retryable, summary.finished) == (0, 6, False)
    assert len(results.items) == 12
    assert {r.error for r in results.items} == {"webhook unreachable: ConnectionRefusedError"}
    assert batch_status(sqlite_ledger, batch).status == "open"

    with WebhookReceiver(port) as receiver:
        summary = run_batch(sqlite_ledger, batch, resolver=resolver, channel=channel, render=render)
    assert (summary.sent, summary.finished) == (6, True)
    keys = [h["Idempotency-Key"] for h, _ in receiver.requests]
    assert sorted(keys) == sorted(notice_id_for(INCIDENT, r) for r in refs)


def test_webhook_wrong_url_is_a_channel_error(sqlite_ledger: NoticeLedger, resolver: ContactResolver) -> None:
    """A 404 from the webhook means it is misconfigured: the run stops instead of failing everyone."""
    refs = make_refs(3)

    class NotFound(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        channel = WebhookChannel(f"http://127.0.0.1:{server.server_address[1]}/wrong")
        batch = plan_batch(sqlite_ledger, INCIDENT, refs, "webhook")
        with pytest.raises(ChannelError, match="HTTP 404"):
            run_batch(sqlite_ledger, batch, resolver=resolver, channel=channel, render=render)
    finally:
        server.shutdown()
        server.server_close()
    assert batch_status(sqlite_ledger, batch).counts["pending"] == 2


# -- both ledgers ---------------------------------------------------------------------------
def test_an_interrupted_batch_of_2000_resumes_without_duplicates(
    any_ledger: NoticeLedger, resolver: ContactResolver, tmp_path: Path
) -> None:
    """2,000 people, stopped after 700 sends, resumed: every outbox message exists once, every row is sent."""
    refs = make_refs(2000, seed="big")
    outbox = OutboxChannel(tmp_path / "outbox")
    batch = plan_batch(any_ledger, INCIDENT, refs, "outbox")
    assert plan_batch(any_ledger, INCIDENT, refs, "outbox") == batch
    stop = threading.Event()
    first = Results(stop_after=700, stop=stop)
    summary = run_batch(any_ledger, batch, resolver=resolver, channel=outbox, render=render, on_result=first, stop=stop)
    assert summary.interrupted and (summary.sent, summary.pending) == (700, 1300)
    second = Results()
    summary = run_batch(any_ledger, batch, resolver=resolver, channel=outbox, render=render, on_result=second)
    assert (summary.sent, summary.pending, summary.in_doubt, summary.finished) == (2000, 0, 0, True)
    sent = [r.notice_id for r in first.items + second.items if r.status == "sent"]
    assert len(sent) == len(set(sent)) == 2000
    files = list((tmp_path / "outbox" / INCIDENT).glob("*.eml"))
    assert len(files) == 2000
    assert {f.name.split(".")[0] for f in files} == {notice_id_for(INCIDENT, r) for r in refs}
    assert batch_status(any_ledger, batch).status == "done"


def test_ledger_contract_in_doubt_skip_and_busy(any_ledger: NoticeLedger, resolver: ContactResolver) -> None:
    """On either backend: 'sending' rows become in doubt, a second delivery to a person is refused, runs exclude."""

    class Recording:
        name = "test"

        def __init__(self) -> None:
            self.sent: list[str] = []

        def send(self, message: Any) -> None:
            self.sent.append(message.subject_ref)

        def close(self) -> None:
            pass

    refs = make_refs(4)
    batch = plan_batch(any_ledger, INCIDENT, refs, "test")
    assert any_ledger._start(batch, refs[0], 1)
    channel = Recording()
    with any_ledger._lock(batch), pytest.raises(BatchBusy):
        run_batch(any_ledger, batch, resolver=resolver, channel=channel, render=render)
    summary = run_batch(any_ledger, batch, resolver=resolver, channel=channel, render=render)
    assert (summary.sent, summary.in_doubt) == (3, 1) and refs[0] not in channel.sent
    assert in_doubt_refs(any_ledger, batch) == [refs[0]]
    # The database itself refuses a second 'sending' for a person of the incident.
    other = plan_batch(any_ledger, INCIDENT, [*refs, *make_refs(1, seed="new")], "other")
    assert any_ledger.refs_in(other, "pending") == make_refs(1, seed="new")
    with any_ledger._b.tx() as cur:
        cur.execute(
            any_ledger._b.sql(
                "INSERT INTO {deliveries} (batch_id, subject_ref, incident_id, notice_id, status, updated_at) "
                "SELECT ?, subject_ref, incident_id, notice_id, 'pending', updated_at FROM {deliveries} "
                "WHERE batch_id = ? AND subject_ref = ?"
            ),
            (other, batch, refs[1]),
        )
    assert any_ledger._start(other, refs[1], 1) is False
    summary = run_batch(any_ledger, batch, resolver=resolver, channel=channel, render=render, resend_in_doubt=True)
    assert (summary.sent, summary.in_doubt, summary.finished) == (4, 0, True)
    assert sorted(channel.sent) == sorted(refs)


# -- a process killed mid-batch -------------------------------------------------------------
CHILD = """
import json, sys
from pathlib import Path
from trail.notices.channels import OutboxChannel
from trail.notices.ledger import NoticeLedger
from trail.notices.model import RenderedNotice
from trail.notices.resolvers import load_resolver
from trail.notices.runner import run_batch

db, outbox, batch, results, example = sys.argv[1:6]
out = open(results, "a", buffering=1)

def render(contact):
    return RenderedNotice("Notice", f"Dear {contact.name}", f"<p>Dear {contact.name}</p>", contact.language)

def on_result(r):
    out.write(json.dumps([r.subject_ref, r.status]) + "\\n")

with NoticeLedger.sqlite(db) as ledger:
    run_batch(ledger, batch, resolver=load_resolver(example + ":ExampleResolver"),
              channel=OutboxChannel(Path(outbox)), render=render, on_result=on_result)
"""


@pytest.mark.slow
def test_a_batch_killed_mid_send_resumes_with_at_most_one_in_doubt(tmp_path: Path, resolver: ContactResolver) -> None:
    """SIGKILL during a batch, then resume: nobody is sent twice, at most one notice is in doubt."""
    refs = make_refs(2000, seed="kill")
    db, outbox, log = tmp_path / "incidents.db", tmp_path / "outbox", tmp_path / "child-results.jsonl"
    with NoticeLedger.sqlite(db) as ledger:
        batch = plan_batch(ledger, INCIDENT, refs, "outbox")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(db), str(outbox), batch, str(log), str(EXAMPLE)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if log.exists() and log.read_text().count("\n") >= 400:
                break
            time.sleep(0.01)
        assert child.poll() is None, "the child finished or died before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    child_sent = {json.loads(line)[0] for line in log.read_text().splitlines() if line.endswith('"sent"]')}
    assert 400 <= len(child_sent) < 2000

    with NoticeLedger.sqlite(db) as ledger:
        results = Results()
        summary = run_batch(
            ledger, batch, resolver=resolver, channel=OutboxChannel(outbox), render=render, on_result=results
        )
        parent_sent = {r.subject_ref for r in results.with_status("sent")}
        assert child_sent.isdisjoint(parent_sent)
        assert summary.in_doubt <= 1
        assert summary.sent + summary.in_doubt == 2000
        # The kill can land between the ledger's "sent" commit and the child's report of it: the
        # ledger is the record; the reports may miss that one person, and never show anyone twice.
        assert 2000 - summary.in_doubt - 1 <= len(child_sent | parent_sent) <= 2000
        files = sorted((outbox / INCIDENT).glob("*.eml"))
        notice_ids = [f.name.split(".")[0] for f in files]
        assert len(notice_ids) == len(set(notice_ids))  # no one has two messages
        assert len(files) in (summary.sent, summary.sent + 1)  # the one in doubt may or may not have been written
        for f in files[:50] + files[-50:]:
            msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            assert msg.get_body(("plain",)) is not None  # whole messages only

        summary = run_batch(
            ledger, batch, resolver=resolver, channel=OutboxChannel(outbox), render=render, resend_in_doubt=True
        )
        assert (summary.sent, summary.finished) == (2000, True)
        assert len(list((outbox / INCIDENT).glob("*.eml"))) == 2000
