"""Notice delivery: specs, the ledger's state machine, resumption, resolvers, and no contact data leaking.

Contacts come from ``examples/contact_resolver.py``: fake, derived from the ref, at
``example.invalid``. The tests assert those addresses, phone numbers and names never reach the
ledger, the logs or an exception message.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import importlib.util
import json
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from trail.errors import ConfigError, TrailError
from trail.notices.channels import OutboxChannel, SmtpChannel, WebhookChannel, make_channel
from trail.notices.errors import (
    BatchBusy,
    ChannelError,
    DeliveryFailed,
    NoticeError,
    NoticeSpecError,
    RenderError,
    ResolverError,
)
from trail.notices.ledger import NoticeLedger
from trail.notices.model import Contact, ContactResolver, OutgoingNotice, RenderedNotice, message_id, notice_id_for
from trail.notices.resolvers import CommandResolver, load_resolver
from trail.notices.runner import (
    DeliveryResult,
    batch_status,
    deliveries,
    in_doubt_refs,
    plan_batch,
    requeue_failed,
    run_batch,
)
from trail.testing import capture_logs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "contact_resolver.py"
INCIDENT = "inc-2026-0001"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_contact_resolver", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


def make_refs(n: int, seed: str = "subject") -> list[str]:
    """n distinct subject refs the example resolver knows (none starts with its "unknown" prefix)."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        ref = hashlib.sha256(f"{seed}-{i}".encode()).hexdigest()
        i += 1
        if not ref.startswith(example.UNKNOWN_PREFIX):
            out.append(ref)
    return out


def unknown_ref(i: int) -> str:
    return example.UNKNOWN_PREFIX + hashlib.sha256(f"unknown-{i}".encode()).hexdigest()[4:]


def contact_data(refs: Sequence[str]) -> list[str]:
    """Every fake e-mail address, phone number and name of these refs."""
    out: list[str] = []
    for ref in refs:
        found = example.fake_contact(ref)
        if found:
            out += [found["email"], found["phone"], found["name"]]
    return out


def render(contact: Contact) -> RenderedNotice:
    if contact.language == "en":
        return RenderedNotice(
            "Notice of a personal information incident",
            f"Dear {contact.name},\n\nwe must tell you about an incident.",
            f"<p>Dear {contact.name},</p><p>we must tell you about an incident.</p>",
            "en",
        )
    return RenderedNotice(
        "个人信息安全事件告知",
        f"尊敬的{contact.name}：\n\n我们必须告知您一起个人信息安全事件。",
        f"<p>尊敬的{contact.name}：</p><p>我们必须告知您一起个人信息安全事件。</p>",
        "zh",
    )


def make_notice(contact: Contact) -> OutgoingNotice:
    r = render(contact)
    nid = notice_id_for(INCIDENT, contact.subject_ref)
    return OutgoingNotice(nid, INCIDENT, contact.subject_ref, contact, r.language, r.subject, r.body_text, r.body_html)


class Results:
    """Collects on_result calls; can set a stop event after k sends."""

    def __init__(self, stop_after: int | None = None, stop: threading.Event | None = None) -> None:
        self.items: list[DeliveryResult] = []
        self.stop_after = stop_after
        self.stop = stop

    def __call__(self, result: DeliveryResult) -> None:
        self.items.append(result)
        if self.stop is not None and self.stop_after is not None and len(self.with_status("sent")) >= self.stop_after:
            self.stop.set()

    def with_status(self, status: str) -> list[DeliveryResult]:
        return [r for r in self.items if r.status == status]


class ScriptedChannel:
    """A channel for unit tests: per ref, a list of failures to raise before it succeeds."""

    name = "test"

    def __init__(self, failures: dict[str, list[BaseException]] | None = None, always: BaseException | None = None):
        self.failures = failures or {}
        self.always = always
        self.sent: list[OutgoingNotice] = []
        self.calls = 0

    def send(self, message: OutgoingNotice) -> None:
        self.calls += 1
        if self.always is not None:
            raise self.always
        pending = self.failures.get(message.subject_ref)
        if pending:
            raise pending.pop(0)
        self.sent.append(message)

    def close(self) -> None:
        pass


@pytest.fixture()
def ledger(tmp_path: Path) -> Iterator[NoticeLedger]:
    with NoticeLedger.sqlite(tmp_path / "incidents.db") as led:
        yield led


@pytest.fixture()
def resolver() -> ContactResolver:
    return load_resolver(f"{EXAMPLE}:ExampleResolver")


def outbox_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.eml"))


# -- specs ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        pytest.param("", "entrypoint:NAME", id="empty"),
        pytest.param("customers", "entrypoint:NAME", id="no-colon"),
        pytest.param("command:", "entrypoint:NAME", id="command-without-program"),
        pytest.param("command:/no/such/program --x", "not found", id="command-missing"),
        pytest.param("command:'unbalanced", "cannot split", id="command-bad-quoting"),
        pytest.param("entrypoint:no-such-resolver", "trail.contact_resolvers", id="entrypoint-missing"),
        pytest.param("no_such_module_xyz:Resolver", "cannot import module", id="module-missing"),
        pytest.param(f"{EXAMPLE}:NoSuchThing", "no attribute", id="attr-missing"),
        pytest.param("/no/such/file.py:Resolver", "no such file", id="file-missing"),
        pytest.param("trail.notices.model:LANGUAGES", "neither a class nor a factory", id="not-callable"),
        pytest.param("trail.notices.channels:OutboxChannel", "building it failed", id="factory-needs-args"),
        pytest.param("collections:OrderedDict", "no resolve(refs) method", id="not-a-resolver"),
        pytest.param("trail.notices.resolvers:bad-name", "package.module:attr", id="bad-attr"),
    ],
)
def test_bad_resolver_specs_say_what_to_fix(spec: str, hint: str) -> None:
    """A bad resolver spec raises a ConfigError naming the problem."""
    with pytest.raises(NoticeSpecError) as info:
        load_resolver(spec)
    assert isinstance(info.value, ConfigError)
    assert hint in str(info.value)


def test_resolver_specs_of_each_form_load(tmp_path: Path) -> None:
    """module:attr, file.py:attr and command: specs each build a working resolver."""
    refs = make_refs(3)
    for spec in (f"{EXAMPLE}:ExampleResolver", f"command:{sys.executable} {EXAMPLE}"):
        found = load_resolver(spec).resolve(refs)
        assert sorted(found) == sorted(refs)
        assert found[refs[0]].email == example.fake_contact(refs[0])["email"]
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        assert isinstance(load_resolver("contact_resolver:ExampleResolver"), ContactResolver)
    finally:
        sys.path.remove(str(EXAMPLE.parent))


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        pytest.param("", "not a channel spec", id="empty"),
        pytest.param("carrier-pigeon", "not a channel spec", id="unknown"),
        pytest.param("smtp://mail.example", "?sender=", id="smtp-no-sender"),
        pytest.param("smtp://bob:s3cret-pw@mail.example:port?sender=a@b.c", "port is not a number", id="smtp-bad-port"),
        pytest.param("smtp://bob:s3cret-pw@mail.example?sender=a@b.c&tls=1", "unknown option", id="smtp-bad-option"),
        pytest.param("smtp://bob:s3cret-pw@?sender=a@b.c", "no host", id="smtp-no-host"),
        pytest.param("smtps://mail.example?sender=a@b.c&starttls=1", "drop starttls", id="smtps-and-starttls"),
        pytest.param("smtp://mail.example?sender=a@b.c&starttls=maybe", "starttls must be", id="smtp-bad-flag"),
        pytest.param("smtp://mail.example?sender=a@b.c&timeout=soon", "timeout", id="smtp-bad-timeout"),
        pytest.param("webhook:ftp://gw.example/notify", "webhook:https://", id="webhook-scheme"),
        pytest.param("webhook:https://gw.example:99999999/x?token=s3cret-pw", "port is not", id="webhook-bad-port"),
        pytest.param("outbox:", "give a directory", id="outbox-empty-dir"),
    ],
)
def test_bad_channel_specs_say_what_to_fix_without_the_password(spec: str, hint: str, tmp_path: Path) -> None:
    """A bad channel spec raises a ConfigError naming the problem, never echoing a password or token."""
    with pytest.raises(NoticeSpecError) as info:
        make_channel(spec, tmp_path)
    assert isinstance(info.value, ConfigError)
    assert hint in str(info.value)
    assert "s3cret-pw" not in str(info.value)


def test_channel_specs_build_configured_channels(tmp_path: Path) -> None:
    """Good specs give the channel they name, with decoded credentials that repr() does not show."""
    smtp = make_channel("smtp://bob:p%40ss@mail.example:2525?sender=notices@corp.example&starttls=1", tmp_path)
    assert isinstance(smtp, SmtpChannel)
    assert (smtp.host, smtp.port, smtp.username, smtp.sender, smtp.starttls) == (
        "mail.example",
        2525,
        "bob",
        "notices@corp.example",
        True,
    )
    assert smtp._password == "p@ss"
    assert "p@ss" not in repr(smtp)
    assert isinstance(make_channel("smtps://mail.example?sender=a@b.c", tmp_path), SmtpChannel)
    assert make_channel("smtps://mail.example?sender=a@b.c", tmp_path).port == 465  # type: ignore[attr-defined]
    hook = make_channel("webhook:https://gw:tok%3Aen@gw.example/notify?x=1", tmp_path)
    assert isinstance(hook, WebhookChannel)
    assert hook.url == "https://gw.example/notify?x=1"
    assert hook.headers["Authorization"].startswith("Basic ")
    assert "tok" not in repr(hook)
    outbox = make_channel("outbox", tmp_path)
    assert isinstance(outbox, OutboxChannel) and outbox.directory == tmp_path
    assert make_channel(f"outbox:{tmp_path / 'other'}", tmp_path).directory == tmp_path / "other"  # type: ignore[attr-defined]


# -- values ---------------------------------------------------------------------------------
def test_contact_and_notice_repr_hide_personal_data() -> None:
    """repr() of a contact or a notice (what tracebacks and prints show) holds only the ref."""
    ref = make_refs(1)[0]
    contact = example.ExampleResolver().resolve([ref])[ref]
    notice = make_notice(contact)
    for text in (repr(contact), str(contact), repr(notice)):
        assert ref in text
        for secret in contact_data([ref]):
            assert secret not in text


def test_notice_ids_are_deterministic_per_incident_and_subject() -> None:
    """The notice id (Message-ID, Idempotency-Key) is the same every time for one incident and person."""
    a, b = make_refs(2)
    assert notice_id_for(INCIDENT, a) == notice_id_for(INCIDENT, a)
    assert len({notice_id_for(INCIDENT, a), notice_id_for(INCIDENT, b), notice_id_for("inc-other", a)}) == 3
    assert message_id(notice_id_for(INCIDENT, a)) == f"<{notice_id_for(INCIDENT, a)}@notice.trail>"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        pytest.param("zh-CN", "zh", id="zh-CN"),
        pytest.param("EN_us", "en", id="en_us"),
        pytest.param("", "zh", id="empty"),
    ],
)
def test_contact_language_tags_are_normalised(tag: str, expected: str) -> None:
    """A contact's language tag becomes zh or en."""
    assert Contact(make_refs(1)[0], language=tag).language == expected


def test_contact_with_unsupported_language_is_refused() -> None:
    """A language other than zh or en is refused without echoing the value."""
    with pytest.raises(ValueError, match="zh, en"):
        Contact(make_refs(1)[0], language="fr")


# -- planning -------------------------------------------------------------------------------
def test_planning_is_idempotent_and_adds_only_new_refs(ledger: NoticeLedger) -> None:
    """Planning the same incident again returns the open batch and adds only refs not planned yet."""
    refs = make_refs(10)
    batch = plan_batch(ledger, INCIDENT, refs[:6], "outbox")
    assert plan_batch(ledger, INCIDENT, refs[:6], "outbox") == batch
    assert batch_status(ledger, batch).total == 6
    assert plan_batch(ledger, INCIDENT, refs[4:] + refs[4:], "outbox") == batch
    info = batch_status(ledger, batch)
    assert (info.total, info.status, info.counts["pending"]) == (10, "open", 10)
    assert plan_batch(ledger, "inc-other", refs[:2], "outbox") != batch


def test_planning_after_a_finished_batch_sends_nobody_twice(
    ledger: NoticeLedger, resolver: Any, tmp_path: Path
) -> None:
    """Once a batch is done, planning the same people again plans nothing new; new people get a new batch."""
    refs = make_refs(5)
    outbox = OutboxChannel(tmp_path / "outbox")
    first = plan_batch(ledger, INCIDENT, refs, "outbox")
    run_batch(ledger, first, resolver=resolver, channel=outbox, render=render)
    assert batch_status(ledger, first).status == "done"
    assert plan_batch(ledger, INCIDENT, refs, "outbox") == first
    assert batch_status(ledger, first).total == 5
    more = make_refs(2, seed="late")
    second = plan_batch(ledger, INCIDENT, refs + more, "outbox")
    assert second != first
    assert batch_status(ledger, second).total == 2


def test_a_malformed_ref_plans_nothing_and_is_not_echoed(ledger: NoticeLedger) -> None:
    """A raw id passed by mistake is refused with its position, not its value, and nothing is planned."""
    refs = make_refs(3)
    with pytest.raises(NoticeError) as info:
        plan_batch(ledger, INCIDENT, [refs[0], "13800138000", refs[1]], "outbox")
    assert "#1" in str(info.value)
    assert "13800138000" not in str(info.value)
    assert ledger.batches_of(INCIDENT) == []
    assert ledger.dump() == []


def test_an_unsafe_incident_id_is_refused(ledger: NoticeLedger) -> None:
    """Incident ids become directory names in the outbox: path-like ones are refused."""
    with pytest.raises(NoticeError, match="incident id"):
        plan_batch(ledger, "../etc", make_refs(1), "outbox")


# -- running --------------------------------------------------------------------------------
def test_a_batch_sends_every_notice_once_in_the_persons_language(
    ledger: NoticeLedger, resolver: Any, tmp_path: Path
) -> None:
    """Every planned person gets one outbox message with its notice id as Message-ID, in their language."""
    refs = make_refs(40)
    batch = plan_batch(ledger, INCIDENT, refs, "outbox")
    results = Results()
    seen: list[tuple[int, int]] = []
    summary = run_batch(
        ledger,
        batch,
        resolver=resolver,
        channel=OutboxChannel(tmp_path / "outbox"),
        render=render,
        on_result=results,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (summary.total, summary.sent, summary.failed, summary.pending, summary.interrupted) == (40, 40, 0, 0, False)
    assert summary.finished
    assert seen[-1] == (40, 40)
    assert [r.status for r in results.items] == ["sent"] * 40
    assert {r.attempt for r in results.items} == {1}
    files = outbox_files(tmp_path / "outbox")
    assert len(files) == 40
    languages = set()
    for path in files:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        notice_id, lang, _ = path.name.split(".")
        assert msg["Message-ID"] == message_id(notice_id)
        assert msg["X-Trail-Ref"] in refs
        assert notice_id == notice_id_for(INCIDENT, msg["X-Trail-Ref"])
        assert msg["Content-Language"].startswith(lang)
        expected = "Notice of" if lang == "en" else "个人信息"
        assert msg["Subject"].startswith(expected)
        assert msg.get_body(("html",)) is not None and msg.get_body(("plain",)) is not None
        languages.add(lang)
    assert languages == {"zh", "en"}
    assert list((tmp_path / "outbox").rglob("*.tmp")) == []


def test_outbox_delivery_is_idempotent(tmp_path: Path) -> None:
    """Sending the same notice twice to the outbox leaves one file, untouched by the second send."""
    ref = make_refs(1)[0]
    contact = example.ExampleResolver().resolve([ref])[ref]
    notice = make_notice(contact)
    channel = OutboxChannel(tmp_path)
    channel.send(notice)
    [path] = outbox_files(tmp_path)
    before = path.read_bytes()
    channel.send(notice)
    assert outbox_files(tmp_path) == [path]
    assert path.read_bytes() == before


def test_stopping_then_resuming_sends_the_rest_exactly_once(
    ledger: NoticeLedger, resolver: Any, tmp_path: Path
) -> None:
    """A run stopped after k sends returns interrupted; the next run sends only the others, each once."""
    refs = make_refs(30)
    batch = plan_batch(ledger, INCIDENT, refs, "outbox")
    stop = threading.Event()
    first = Results(stop_after=12, stop=stop)
    channel = OutboxChannel(tmp_path / "outbox")
    summary = run_batch(ledger, batch, resolver=resolver, channel=channel, render=render, on_result=first, stop=stop)
    assert summary.interrupted and summary.stopped_reason == "stopped on request"
    assert (summary.sent, summary.pending, summary.in_doubt) == (12, 18, 0)
    assert len(outbox_files(tmp_path / "outbox")) == 12
    assert batch_status(ledger, batch).status == "open"

    second = Results()
    summary = run_batch(ledger, batch, resolver=resolver, channel=channel, render=render, on_result=second)
    assert (summary.sent, summary.pending, summary.interrupted) == (30, 0, False)
    sent_first = {r.subject_ref for r in first.with_status("sent")}
    sent_second = {r.subject_ref for r in second.with_status("sent")}
    assert len(second.items) == 18
    assert sent_first.isdisjoint(sent_second) and sent_first | sent_second == set(refs)
    assert len(outbox_files(tmp_path / "outbox")) == 30
    assert ledger.counts(batch_id=batch)["sent"] == 30
    assert len([r for r in ledger.dump() if len(r) > 6]) == 30  # one delivery row per person


def test_a_row_left_sending_becomes_in_doubt_and_is_resent_only_on_request(
    ledger: NoticeLedger, resolver: Any, tmp_path: Path
) -> None:
    """A delivery a killed process left in 'sending' is reported in doubt and not resent unless asked."""
    refs = make_refs(5)
    batch = plan_batch(ledger, INCIDENT, refs, "outbox")
    assert ledger._start(batch, refs[2], 1)  # what a process killed mid-send leaves behind
    channel = OutboxChannel(tmp_path / "outbox")
    results = Results()
    summary = run_batch(ledger, batch, resolver=resolver, channel=channel, render=render, on_result=results)
    assert (summary.sent, summary.in_doubt, summary.finished) == (4, 1, False)
    [doubt] = results.with_status("in_doubt")
    assert doubt.subject_ref == refs[2] and doubt.attempt == 1
    assert in_doubt_refs(ledger, batch) == [refs[2]]
    assert batch_status(ledger, batch).status == "open"
    assert len(outbox_files(tmp_path / "outbox")) == 4

    again = Results()
    summary = run_batch(ledger, batch, resolver=resolver, channel=channel, render=render, on_result=again)
    assert (summary.sent, summary.in_doubt) == (4, 1) and again.items == []

    summary = run_batch(ledger, batch, resolver=resolver, channel=channel, render=render, resend_in_doubt=True)
    assert (summary.sent, summary.in_doubt, summary.finished) == (5, 0, True)
    assert len(outbox_files(tmp_path / "outbox")) == 5
    assert batch_status(ledger, batch).status == "done"


def test_unresolvable_refs_fail_permanently(ledger: NoticeLedger, resolver: Any, tmp_path: Path) -> None:
    """A ref the resolver does not know fails with 'no contact' and is not tried again."""
    refs = [*make_refs(3), unknown_ref(1), unknown_ref(2)]
    batch = plan_batch(ledger, INCIDENT, refs, "outbox")
    results = Results()
    channel = OutboxChannel(tmp_path / "outbox")
    summary = run_batch(ledger, batch, resolver=resolver, channel=channel, render=render, on_result=results)
    assert (summary.sent, summary.failed, summary.retryable, summary.finished) == (3, 2, 0, True)
    failed = results.with_status("failed")
    assert {r.subject_ref for r in failed} == {unknown_ref(1), unknown_ref(2)}
    assert all(r.error == "no contact" and not r.retryable for r in failed)
    again = Results()
    run_batch(ledger, batch, resolver=resolver, channel=channel, render=render, on_result=again)
    assert again.items == []


def test_retryable_failures_are_retried_up_to_the_limit(ledger: NoticeLedger, resolver: Any) -> None:
    """Retryable failures are retried within a run up to max_attempts; permanent ones are not."""
    a, b, c, d = make_refs(4)
    channel = ScriptedChannel(
        {
            a: [DeliveryFailed("busy", retryable=True)] * 2,  # sent on the third attempt
            b: [DeliveryFailed("busy", retryable=True)] * 5,  # still failing after three
            c: [DeliveryFailed("refused", retryable=False)],
        }
    )
    batch = plan_batch(ledger, INCIDENT, [a, b, c, d], "test")
    results = Results()
    summary = run_batch(
        ledger, batch, resolver=resolver, channel=channel, render=render, on_result=results, retry_backoff_s=0
    )
    assert (summary.sent, summary.failed, summary.retryable) == (2, 2, 1)
    by_ref: dict[str, list[tuple[str, int]]] = {}
    for r in results.items:
        by_ref.setdefault(r.subject_ref, []).append((r.status, r.attempt))
    assert by_ref[a] == [("failed", 1), ("failed", 2), ("sent", 3)]
    assert by_ref[b] == [("failed", 1), ("failed", 2), ("failed", 3)]
    assert by_ref[c] == [("failed", 1)]
    assert by_ref[d] == [("sent", 1)]
    assert {m.subject_ref for m in channel.sent} == {a, d}

    # A later run tries the retryable one again (attempts keep counting), never the permanent one.
    channel.failures[b] = []
    again = Results()
    summary = run_batch(
        ledger, batch, resolver=resolver, channel=channel, render=render, on_result=again, retry_backoff_s=0
    )
    assert [(r.subject_ref, r.status, r.attempt) for r in again.items] == [(b, "sent", 4)]
    assert (summary.sent, summary.failed, summary.finished) == (3, 1, True)


def test_a_channel_failing_every_time_stops_the_run(ledger: NoticeLedger, resolver: Any) -> None:
    """After max_consecutive_failures retryable failures in a row the run stops, resumable later."""
    refs = make_refs(20)
    channel = ScriptedChannel(always=DeliveryFailed("gateway unreachable", retryable=True))
    batch = plan_batch(ledger, INCIDENT, refs, "test")
    summary = run_batch(
        ledger, batch, resolver=resolver, channel=channel, render=render, max_consecutive_failures=5, retry_backoff_s=0
    )
    assert summary.interrupted and summary.stopped_reason is not None
    assert "5 times in a row" in summary.stopped_reason
    assert (channel.calls, summary.retryable, summary.pending) == (5, 5, 15)
    channel.always = None
    summary = run_batch(ledger, batch, resolver=resolver, channel=channel, render=render, retry_backoff_s=0)
    assert (summary.sent, summary.finished) == (20, True)


def test_a_channel_error_stops_the_run_and_keeps_the_rest_pending(ledger: NoticeLedger, resolver: Any) -> None:
    """A misconfigured channel raises at once; the notice at hand is a retryable failure, the rest stay pending."""
    refs = make_refs(6)
    channel = ScriptedChannel(always=ChannelError("the SMTP server refused the login (535)"))
    batch = plan_batch(ledger, INCIDENT, refs, "test")
    with pytest.raises(ChannelError, match="refused the login"):
        run_batch(ledger, batch, resolver=resolver, channel=channel, render=render)
    counts = batch_status(ledger, batch).counts
    assert (counts["failed"], counts["retryable"], counts["pending"], channel.calls) == (1, 1, 5, 1)


def test_an_unexpected_channel_exception_leaves_the_notice_in_doubt(ledger: NoticeLedger, resolver: Any) -> None:
    """When a channel raises something unforeseen mid-send, the delivery is recorded in doubt and the error passes."""
    refs = make_refs(3)
    channel = ScriptedChannel({refs[1]: [RuntimeError("socket exploded")]})
    batch = plan_batch(ledger, INCIDENT, refs, "test")
    with pytest.raises(RuntimeError):
        run_batch(ledger, batch, resolver=resolver, channel=channel, render=render)
    counts = batch_status(ledger, batch).counts
    assert (counts["sent"], counts["in_doubt"], counts["pending"]) == (1, 1, 1)
    summary = run_batch(ledger, batch, resolver=resolver, channel=channel, render=render)
    assert (summary.sent, summary.in_doubt) == (2, 1)


def test_a_failing_template_sends_nothing_to_that_person(ledger: NoticeLedger, resolver: Any) -> None:
    """A template error raises RenderError (no contact data in it) and leaves the person pending."""
    refs = make_refs(2)
    batch = plan_batch(ledger, INCIDENT, refs, "test")

    def broken(contact: Contact) -> RenderedNotice:
        raise KeyError(f"greeting for {contact.name} <{contact.email}>")

    channel = ScriptedChannel()
    with pytest.raises(RenderError) as info:
        run_batch(ledger, batch, resolver=resolver, channel=channel, render=broken)
    assert "KeyError" in str(info.value)
    for secret in contact_data(refs):
        assert secret not in str(info.value)
    assert batch_status(ledger, batch).counts["pending"] == 2 and channel.calls == 0


def test_a_batch_runs_once_at_a_time(tmp_path: Path, resolver: Any) -> None:
    """A second run of a batch that is running (here: another ledger on the same file) is refused."""
    path = tmp_path / "incidents.db"
    with NoticeLedger.sqlite(path) as one, NoticeLedger.sqlite(path) as two:
        batch = plan_batch(one, INCIDENT, make_refs(2), "test")
        with one._lock(batch), pytest.raises(BatchBusy):
            run_batch(two, batch, resolver=resolver, channel=ScriptedChannel(), render=render)
        assert run_batch(two, batch, resolver=resolver, channel=ScriptedChannel(), render=render).sent == 2


def test_a_batch_runs_only_on_its_channel(ledger: NoticeLedger, resolver: Any, tmp_path: Path) -> None:
    """Running a batch with a channel other than the planned one is refused."""
    batch = plan_batch(ledger, INCIDENT, make_refs(1), "smtp")
    with pytest.raises(NoticeError, match="planned for channel smtp"):
        run_batch(ledger, batch, resolver=resolver, channel=OutboxChannel(tmp_path), render=render)


def test_failed_people_can_be_planned_on_another_channel_but_sent_ones_cannot(
    ledger: NoticeLedger, resolver: Any
) -> None:
    """A person who failed for good on one channel can be tried on another; one already reached cannot."""
    reached, no_email = make_refs(2)
    first = plan_batch(ledger, INCIDENT, [reached, no_email], "test")
    channel = ScriptedChannel({no_email: [DeliveryFailed("no e-mail address", retryable=False)]})
    run_batch(ledger, first, resolver=resolver, channel=channel, render=render)

    class Sms(ScriptedChannel):
        name = "sms"

    second = plan_batch(ledger, INCIDENT, [reached, no_email], "sms")
    assert ledger.refs_in(second, "pending") == [no_email]
    summary = run_batch(ledger, second, resolver=resolver, channel=Sms(), render=render)
    assert summary.sent == 1
    totals = deliveries(ledger, INCIDENT)
    assert (totals["sent"], totals["failed"]) == (2, 1)
    assert [b.channel for b in ledger.batches_of(INCIDENT)] == ["test", "sms"]


def test_the_database_refuses_a_second_delivery_to_one_person(ledger: NoticeLedger, resolver: Any) -> None:
    """If two batches of an incident hold the same person, the second one to send is skipped, not sent."""
    ref = make_refs(1)[0]
    first = plan_batch(ledger, INCIDENT, [ref], "test")

    class Other(ScriptedChannel):
        name = "other"

    # Two planners racing can both record the person; simulate it by planning before the first one failed.
    with ledger._b.tx() as cur:
        cur.execute(
            "INSERT INTO notice_batches VALUES ('racing', ?, 'other', '2026-01-01T00:00:00+00:00', 1, 'open')",
            (INCIDENT,),
        )
        cur.execute(
            "INSERT INTO notice_deliveries (batch_id, subject_ref, incident_id, notice_id, status, updated_at) "
            "VALUES ('racing', ?, ?, ?, 'pending', '2026-01-01T00:00:00+00:00')",
            (ref, INCIDENT, notice_id_for(INCIDENT, ref)),
        )
    assert run_batch(ledger, first, resolver=resolver, channel=ScriptedChannel(), render=render).sent == 1
    channel = Other()
    results = Results()
    summary = run_batch(ledger, "racing", resolver=resolver, channel=channel, render=render, on_result=results)
    assert (summary.sent, summary.skipped, channel.calls) == (0, 1, 0)
    assert results.items[0].status == "skipped"


def test_requeue_makes_failed_deliveries_pending_again(ledger: NoticeLedger, resolver: Any) -> None:
    """After fixing the cause, failed deliveries of a batch can be queued again."""
    ref = make_refs(1)[0]
    batch = plan_batch(ledger, INCIDENT, [ref], "test")
    channel = ScriptedChannel({ref: [DeliveryFailed("mailbox full", retryable=False)]})
    assert run_batch(ledger, batch, resolver=resolver, channel=channel, render=render).failed == 1
    assert requeue_failed(ledger, batch) == 1
    summary = run_batch(ledger, batch, resolver=resolver, channel=channel, render=render)
    assert (summary.sent, summary.failed) == (1, 0)


def test_smtp_channel_refuses_a_contact_without_email_before_connecting() -> None:
    """A contact with no e-mail address is a permanent failure that says nothing about the contact."""
    ref = make_refs(1)[0]
    contact = Contact(ref, email=None, phone="+8613912345678", name="Test Person X")
    notice = make_notice(contact)
    channel = SmtpChannel("127.0.0.1", 1, "notices@corp.example")
    with pytest.raises(DeliveryFailed) as info:
        channel.send(notice)
    assert (info.value.reason, info.value.retryable) == ("no e-mail address", False)
    assert "13912345678" not in str(info.value)


# -- resolvers ------------------------------------------------------------------------------
def test_command_resolver_runs_the_example_program_in_chunks() -> None:
    """The example resolver as a real subprocess, several chunks: known refs resolved, unknown ones left out."""
    refs = [*make_refs(7), unknown_ref(1)]
    resolver = load_resolver(f"command:{sys.executable} {EXAMPLE}", chunk_size=3)
    assert isinstance(resolver, CommandResolver)
    found = resolver.resolve(refs)
    assert sorted(found) == sorted(refs[:7])
    for ref in refs[:7]:
        expected = example.fake_contact(ref)
        got = found[ref]
        assert (got.email, got.phone, got.name, got.language) == (
            expected["email"],
            expected["phone"],
            expected["name"],
            expected["language"],
        )


def write_program(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("import sys, json, time\n" + body)
    return f"command:{sys.executable} {path}"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "sys.stderr.write('lookup failed for {email} {phone} {name}')\nsys.exit(3)",
            "exited with status 3",
            id="nonzero-exit",
        ),
        pytest.param(
            "print(json.dumps({{'subject_ref': '{ref}', 'email': '{email}'}}))\nprint('{name} <{email}> {phone}')",
            "stdout line 2: not valid JSON",
            id="garbage-line",
        ),
        pytest.param("print('[\"{email}\"]')", "stdout line 1: expected a JSON object", id="not-an-object"),
        pytest.param(
            "print(json.dumps({{'subject_ref': 'f' * 64, 'email': '{email}'}}))",
            "not one of the refs asked for",
            id="unasked-ref",
        ),
        pytest.param(
            "print(json.dumps({{'subject_ref': '{ref}', 'phone': 13912345678}}))",
            "phone must be a string",
            id="wrong-type",
        ),
        pytest.param(
            "print(json.dumps({{'subject_ref': '{ref}', 'language': 'fr', 'name': '{name}'}}))",
            "language must be one of",
            id="bad-language",
        ),
        pytest.param(
            "line = json.dumps({{'subject_ref': '{ref}', 'email': '{email}'}})\nprint(line)\nprint(line)",
            "a second contact",
            id="duplicate",
        ),
        pytest.param("sys.stdout.buffer.write(b'\\xff\\xfe{email}')", "not UTF-8", id="not-utf8"),
    ],
)
def test_a_broken_command_resolver_gives_a_clear_error_without_contact_data(
    tmp_path: Path, body: str, expected: str
) -> None:
    """Bad exits and bad output name the resolver and line but never echo what the program wrote."""
    ref = make_refs(1)[0]
    fake = example.fake_contact(ref)
    spec = write_program(tmp_path, "broken_resolver.py", body.format(ref=ref, **fake))
    with pytest.raises(ResolverError) as info:
        load_resolver(spec).resolve([ref])
    text = str(info.value)
    assert expected in text
    assert "broken_resolver.py" in text or "python" in text
    for secret in (fake["email"], fake["phone"], fake["name"], "13912345678"):
        assert secret not in text


def test_a_slow_command_resolver_times_out(tmp_path: Path) -> None:
    """A resolver that does not answer in time is stopped with a clear error."""
    spec = write_program(tmp_path, "slow_resolver.py", "time.sleep(30)")
    with pytest.raises(ResolverError, match=r"did not finish within 0\.5s"):
        load_resolver(spec, timeout=0.5).resolve(make_refs(1))


def test_a_resolver_error_stops_the_run_and_keeps_everyone_pending(ledger: NoticeLedger, tmp_path: Path) -> None:
    """When the resolver fails, nothing is sent or marked: the batch can run again once it is fixed."""
    refs = make_refs(4)
    batch = plan_batch(ledger, INCIDENT, refs, "test")
    broken = load_resolver(write_program(tmp_path, "down.py", "sys.exit(1)"))
    with pytest.raises(ResolverError):
        run_batch(ledger, batch, resolver=broken, channel=ScriptedChannel(), render=render)
    assert batch_status(ledger, batch).counts["pending"] == 4


def test_an_in_process_resolver_exception_is_reported_without_its_message(ledger: NoticeLedger) -> None:
    """An exception from the organisation's resolver is reported by type only: its text may hold contact data."""
    ref = make_refs(1)[0]
    fake = example.fake_contact(ref)

    class Leaky:
        def resolve(self, refs: Sequence[str]) -> dict[str, Contact]:
            raise LookupError(f"customer {fake['name']} has two addresses: {fake['email']}")

    batch = plan_batch(ledger, INCIDENT, [ref], "test")
    with pytest.raises(ResolverError) as info:
        run_batch(ledger, batch, resolver=Leaky(), channel=ScriptedChannel(), render=render)
    assert "LookupError" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    for secret in contact_data([ref]):
        assert secret not in str(info.value)


# -- no contact data anywhere ----------------------------------------------------------------
def test_no_contact_detail_reaches_logs_ledger_or_errors(ledger: NoticeLedger, resolver: Any, tmp_path: Path) -> None:
    """Across sends, failures, retries and in-doubt recovery, logs and ledger hold refs but no contact data."""
    refs = make_refs(12)
    leaky_reason = "failed"

    def fail_with(ref: str, retryable: bool) -> list[BaseException]:
        return [DeliveryFailed(leaky_reason, retryable=retryable)]

    channel = ScriptedChannel({refs[0]: fail_with(refs[0], True), refs[1]: fail_with(refs[1], False)})
    batch = plan_batch(ledger, INCIDENT, [*refs, unknown_ref(1)], "test")
    assert ledger._start(batch, refs[5], 1)
    errors: list[str] = []
    with capture_logs("debug") as logs:
        results = Results()
        run_batch(
            ledger, batch, resolver=resolver, channel=channel, render=render, on_result=results, retry_backoff_s=0
        )
        try:
            run_batch(
                ledger, batch, resolver=resolver, channel=ScriptedChannel(always=ChannelError("x")), render=render
            )
        except TrailError as exc:
            errors.append(str(exc))
    text = logs.getvalue()
    assert "notices.batch_run" in text and "notices.in_doubt_found" in text and refs[0][:12] in text
    stored = json.dumps(ledger.dump(), default=str)
    assert refs[0] in stored
    seen = json.dumps([repr(r) for r in results.items]) + " ".join(errors)
    for secret in contact_data(refs):
        assert secret not in text
        assert secret not in stored
        assert secret not in seen
    assert {m.contact.email for m in channel.sent} >= {example.fake_contact(refs[2])["email"]}  # it did resolve them


def test_ledger_tables_and_columns_are_as_documented(ledger: NoticeLedger) -> None:
    """The tables are notice_batches and notice_deliveries, and a delivery row has no place for contact data."""
    plan_batch(ledger, INCIDENT, make_refs(1), "outbox")
    with ledger._b.tx() as cur:
        tables = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
        columns = [r[1] for r in cur.execute("PRAGMA table_info(notice_deliveries)").fetchall()]
    assert {"notice_batches", "notice_deliveries"} <= tables
    assert columns == [
        "batch_id",
        "subject_ref",
        "incident_id",
        "notice_id",
        "status",
        "retryable",
        "attempts",
        "last_error",
        "updated_at",
    ]


def test_a_resolver_returning_something_else_than_a_mapping_is_an_error(ledger: NoticeLedger) -> None:
    """A resolver must return a mapping of ref to Contact; anything else stops the run with a clear error."""

    class Listy:
        def resolve(self, refs: Sequence[str]) -> Any:
            return [Contact(r) for r in refs]

    batch = plan_batch(ledger, INCIDENT, make_refs(1), "test")
    with pytest.raises(ResolverError, match="no mapping"):
        run_batch(ledger, batch, resolver=Listy(), channel=ScriptedChannel(), render=render)


def test_a_subject_line_with_newlines_stays_one_header(tmp_path: Path) -> None:
    """A template's stray newline in the title cannot break (or inject) message headers."""
    ref = make_refs(1)[0]
    contact = Contact(ref, email=example.fake_contact(ref)["email"], language="en")
    notice = make_notice(contact)
    notice = OutgoingNotice(
        notice.notice_id, INCIDENT, ref, contact, "en", "Notice\r\nBcc: x@example.invalid", "text", "<p>html</p>"
    )
    OutboxChannel(tmp_path).send(notice)
    [path] = outbox_files(tmp_path)
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Notice Bcc: x@example.invalid"
    assert msg["Bcc"] is None
