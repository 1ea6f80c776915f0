"""``trail demo``: one simulated day of three services, end to end, on a fresh data directory.

crm (support staff collect, view and correct customer data), billing (a service that uses
billing data, plus a nightly retention job that deletes expired records) and marketing
(one analyst's bulk export of 50,000 records at 03:00 local time) record through the SDK;
events travel through the local broker and the sink into the chDB store; the demo then
reads back counts, one subject's history and the sequence-gap check.

All subject ids are synthetic (``CUST-000001`` ...); they are pseudonymised by the SDK and
never printed.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

import click

from trail.api.client import ApiClient
from trail.config import Settings
from trail.errors import UsageError
from trail.events.model import LegalBasis, Location, Target
from trail.integrity.keys import load_public_key
from trail.local.stack import LocalStack
from trail.rights.compliance import check
from trail.rights.render import render_report
from trail.sdk.client import Client
from trail.sdk.pseudonymise import Pseudonymiser
from trail.sdk.transport import KafkaTransport

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
N_SUBJECTS = 2000
#: The port `make demo` suggests for the console of `trail up` on its data (any free port works).
CONSOLE_PORT = 8470
EXPORT_RECORDS = 50_000
EXPORT_PARTS = 4


def _subject(i: int) -> str:
    return f"CUST-{i:06d}"


def _prepare_dir(settings: Settings, fresh: bool) -> None:
    d = settings.data_dir
    if d.exists() and any(d.iterdir()):
        looks_like_trail = any((d / name).exists() for name in ("store", "subject.key", "spool", "broker.log"))
        if not fresh:
            raise UsageError(f"--data-dir {d} is not empty; pass --fresh to start the demo over")
        if not looks_like_trail:
            raise UsageError(f"--data-dir {d} does not look like a trail data directory; refusing to delete it")
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)


def _day_start() -> datetime:
    """Local midnight of yesterday, in UTC."""
    today = datetime.now(LOCAL_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=1)).astimezone(UTC)


class _CrmCommon(TypedDict, total=False):
    purpose: str
    legal_basis: LegalBasis
    target: Target
    location: Location


def _at(day: datetime, hour: float) -> datetime:
    return day + timedelta(seconds=hour * 3600)


def _working_hour(rng: random.Random) -> float:
    # Two humps: 09:00-12:00 and 14:00-18:00 local time.
    return rng.choice((rng.uniform(9, 12), rng.uniform(14, 18)))


def simulate(clients: dict[str, Client], n_events: int, seed: int = 7) -> dict[str, Any]:
    """Record the simulated day; returns what was sent, for the read-back check."""
    rng = random.Random(seed)
    day = _day_start()
    sent = 0
    crm, billing, marketing = clients["crm"], clients["billing"], clients["marketing"]
    staff = [f"E{1000 + i}" for i in range(40)]
    crm_common: _CrmCommon = {
        "purpose": "customer service",
        "legal_basis": "contract",
        "target": {"system": "crm", "dataset": "customers"},
        "location": {"site": "shenzhen-dc1", "region": "CN-GD"},
    }
    # 1. collection: every customer's record is collected once (sign-up), early in the day.
    for i in range(1, N_SUBJECTS + 1):
        crm.record(
            occurred_at=_at(day, rng.uniform(0.5, 8.5)),
            actor={"kind": "service", "id": "signup-api"},
            action="collect",
            subject_ids=[_subject(i)],
            data_categories=["name", "phone", "address"],
            consent_ref=f"CONSENT-{i:06d}",
            **(crm_common | _CrmCommon(legal_basis="consent", purpose="account opening")),
        )
        sent += 1
    # 2. support work: views and corrections during working hours.
    remaining = max(0, n_events - N_SUBJECTS - EXPORT_PARTS - 3)
    for _ in range(remaining // 2):
        kind = rng.random()
        subject = _subject(rng.randint(1, N_SUBJECTS))
        crm.record(
            occurred_at=_at(day, _working_hour(rng)),
            actor={"kind": "staff", "id": rng.choice(staff), "role": "support", "department": "customer-care"},
            action="view" if kind < 0.8 else "modify" if kind < 0.95 else "correct",
            subject_ids=[subject],
            data_categories=["name", "phone"],
            attributes={"ticket": f"T-{rng.randint(10000, 99999)}"},
            **crm_common,
        )
        sent += 1
    # 3. billing: a service uses account and financial data around the clock.
    for _ in range(remaining - remaining // 2):
        billing.record(
            occurred_at=_at(day, rng.uniform(0, 24)),
            actor={"kind": "service", "id": "invoice-runner"},
            action=rng.choice(("use", "query")),
            subject_ids=[_subject(rng.randint(1, N_SUBJECTS - 300))],  # the last 300 are deleted at 23:00
            data_categories=["account", "financial"],
            purpose="monthly invoicing",
            legal_basis="contract",
            target={"system": "billing", "dataset": "accounts"},
        )
        sent += 1
    # 4. the bulk export at 03:00 local time: 50,000 records (25 rows of history for each of the
    #    first 2,000 customers) to a file, recorded in four parts of 500 customers (MIIT Art. 13(3)).
    for part in range(EXPORT_PARTS):
        size = N_SUBJECTS // EXPORT_PARTS
        marketing.record(
            occurred_at=_at(day, 3.0 + part / 360),
            actor={"kind": "staff", "id": "E2042", "role": "analyst", "department": "marketing"},
            action="export",
            subject_ids=[_subject(i) for i in range(part * size + 1, part * size + size + 1)],
            record_count=EXPORT_RECORDS // EXPORT_PARTS,
            data_categories=["name", "phone", "address"],
            purpose="campaign list",
            legal_basis="consent",
            consent_ref="CONSENT-POLICY-2026",
            target={"system": "crm", "dataset": "customers"},
            destination={"kind": "file", "name": "campaign-export.csv", "region": "CN"},
            location={"ip": "10.20.30.41", "site": "shenzhen-dc1", "region": "CN-GD"},
        )
        sent += 1
    # 5. the retention run at 23:00: accounts closed for longer than the retention period.
    expired = list(range(N_SUBJECTS - 299, N_SUBJECTS + 1))
    for batch_start in range(0, len(expired), 100):
        batch = expired[batch_start : batch_start + 100]
        billing.record(
            occurred_at=_at(day, 23.0 + batch_start / 1000),
            actor={"kind": "system", "id": "retention-job"},
            action="delete",
            subject_ids=[_subject(i) for i in batch],
            data_categories=["account", "financial"],
            purpose="retention period ended (Shenzhen Art. 25)",
            legal_basis="law",
            target={"system": "billing", "dataset": "accounts"},
        )
        sent += 1
    return {"sent": sent, "day": day, "featured": _subject(N_SUBJECTS)}


def _alerts(stack: LocalStack, echo: Any, timeout: float = 30.0) -> bool:
    """Wait for the detectors' bulk-export alert (MIIT Art. 13(3)) and show every alert raised."""
    from trail.detect.review import list_alerts

    assert stack.store is not None
    deadline = time.monotonic() + timeout
    alerts = list_alerts(stack.store, limit=100)
    while not any(a.rule == "bulk_export" for a in alerts) and time.monotonic() < deadline:
        time.sleep(0.5)
        alerts = list_alerts(stack.store, limit=100)
    echo(f"  detectors raised {len(alerts)} alert(s) for review (trail alerts list):")
    for a in sorted(alerts, key=lambda a: a.window_start):
        local = datetime.fromisoformat(a.window_start).astimezone(LOCAL_TZ).strftime("%H:%M")
        echo(f"    [{a.severity}] {a.rule} actor {a.actor} at {local} local: {a.summary} ({'; '.join(a.articles)})")
    return any(a.rule == "bulk_export" and a.actor == "E2042" for a in alerts)


def _breach(stack: LocalStack, settings: Settings, echo: Any, timeout: float = 60.0) -> tuple[bool, int]:
    """The bulk-export alert opened an incident: grade, clocks, regulator report, notices."""
    import sys

    from trail.incidents.filing import write_incident_documents
    from trail.notices import workflow

    incidents = stack.incidents
    deadline = time.monotonic() + timeout

    def export_incident() -> dict[str, Any] | None:
        for row in incidents.summaries():
            view: dict[str, Any] = incidents.show(row["ref"])
            if any(a["rule"] == "bulk_export" for a in view["alerts"]):
                return view
        return None

    found = export_incident()
    while found is None and time.monotonic() < deadline:
        time.sleep(0.5)
        found = export_incident()
    if found is None:
        echo("  no incident was opened from the bulk-export alert", err=True)
        return False, 0
    others = [r for r in incidents.summaries() if r["ref"] != found["ref"]]
    for r in others:
        echo(f"  incident {r['ref']} opened from alerts: {r['title']} (grade {r['grade']})")
    view = found
    ref = view["ref"]
    g = view["grade"]
    echo(
        f"  incident {ref} opened from {len(view['alerts'])} alert(s): {view['title']}; graded {g['level']} "
        f"{g['name_zh']} / {g['name_en']}"
    )
    for reason in g["reasons"]:
        echo(f"    - {reason}")
    ev = view["evidence"] or {}
    echo(
        f"    evidence frozen from the trail: {ev.get('people_affected')} people affected "
        f"({ev.get('sensitive_people')} with sensitive categories), categories {', '.join(ev.get('categories', []))}, "
        f"{ev.get('events')} events, digest {str(ev.get('digest', ''))[:16]}"
    )
    echo("    clocks started at discovery (trail incidents show " + ref + "):")
    for o in view["obligations"]:
        echo(f"      {o['id']:<22} {o['recipient_en'][:58]:<58} due {o.get('due_at') or '-'} ({o['time_left']})")
    files = write_incident_documents(incidents, settings, ref, by="E1001", kinds=["initial_report"])
    echo(f"    regulator initial report (zh, en): {files[0].parent}")
    drafted = workflow.draft(incidents, settings, ref, by="E1001")
    workflow.approve(incidents, ref, by="E1002")
    resolver = settings.contact_resolver or _example_resolver(sys.executable)
    result = workflow.send(
        incidents,
        settings,
        ref,
        by="E1002",
        resolver_spec=resolver,
        channel_spec="outbox",
        bootstrap=stack.bootstrap,
    )
    outbox = settings.effective_outbox_dir / "notices"
    echo(
        f"    notices to individuals (PIPL Art. 57): drafted for {drafted['subjects']} people by E1001, approved by "
        f"E1002, {result['sent']} sent to the outbox, {result['failed']} failed: {outbox}"
    )
    echo(f"    notice text (zh, en): {incident_dir_text(settings, ref)}")
    after = incidents.show(ref)
    met = [o["id"] for o in after["obligations"] if o["status"] == "met"]
    echo(f"    obligations met so far: {', '.join(met) or 'none'}; timeline: trail incidents timeline {ref}")
    # The example resolver knows no contact for refs starting 0000 (to show failures): those fail.
    ok = bool(files) and result["sent"] > 0 and result["sent"] + result["failed"] == drafted["subjects"]
    return ok, int(result["audit_events"])


def incident_dir_text(settings: Settings, ref: str) -> str:
    return str(settings.effective_outbox_dir / ref / "notice")


def _example_resolver(python: str) -> str:
    """The example contact resolver shipped in examples/ (fake addresses under example.invalid)."""
    from pathlib import Path

    import trail

    script = Path(trail.__file__).resolve().parents[2] / "examples" / "contact_resolver.py"
    return f"command:{python} {script}"


def _integrity(stack: LocalStack, settings: Settings, event_id: str, echo: Any) -> tuple[bool, bool]:
    """Seal, verify the whole trail, and write and check one inclusion proof."""
    from trail.integrity.checkpoint import AppendOnlyLog
    from trail.integrity.keys import load_public_key
    from trail.integrity.proof import build_proof, check_proof
    from trail.integrity.verify import Verifier

    assert stack.store is not None
    stack._seal_now()
    public = load_public_key(settings.public_key_path)
    report = Verifier(stack.store, public, AppendOnlyLog(settings.checkpoint_log_path), strict=True).run()
    s = report.summary()
    echo(
        f"  trail verify: {'intact' if report.intact else 'FINDINGS'}: {s['events_checked']} events, "
        f"{s['sealed_events']} sealed by {s['checkpoints_checked']} signed checkpoint(s) (key {public.key_id}); "
        f"{s['copy_rows_checked']} rows of the lookup copies match the events"
    )
    for f in report.findings[:10]:
        echo(f"    {f.kind}: {f.detail} ({f.producer_id} #{f.seq})")
    if not event_id:
        return report.intact, False
    doc = build_proof(stack.store, event_id)
    path = settings.data_dir / "proof-export.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2))
    problems = check_proof(json.loads(path.read_text()), public)
    echo(
        f"  inclusion proof of the bulk export: leaf {doc['leaf_index']} of {doc['tree_size']} under checkpoint "
        f"{doc['checkpoint']['seq']}: {'checks' if not problems else 'FAILS: ' + '; '.join(problems)} -> {path}"
    )
    echo(f"    check it offline: trail proof check {path} --public-key {public.raw_hex}")
    return report.intact, not problems


def _reports(stack: LocalStack, settings: Settings, featured: str, echo: Any) -> bool:
    """A subject report for one demo customer and the compliance report for the demo day, through
    the API as the local principal (both audited), written under ``DATA_DIR/reports``."""
    out_dir = settings.data_dir / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    api = ApiClient(stack.api_url, settings.local_token_path.read_text().strip())
    day = _day_start()
    subject = api.post(
        "/v1/subjects/report",
        {"subject_id": featured, "purpose": "demo: the customer's access request (PIPL Art. 45)"},
    )
    compliance = api.post(
        "/v1/compliance/report",
        {"from": day.strftime("%Y-%m-%dT%H:%M:%SZ"), "to": (day + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")},
    )
    written = []
    for kind, report, forms in (
        ("subject_report", subject, (("zh", "md"), ("en", "html"), ("zh", "pdf"), ("en", "json"))),
        ("compliance_report", compliance, (("zh", "md"), ("en", "html"), ("zh", "pdf"), ("en", "json"))),
    ):
        for lang, fmt in forms:
            path = out_dir / (f"{kind}.json" if fmt == "json" else f"{kind}.{lang}.{fmt}")
            path.write_bytes(render_report(kind, report, lang=lang, fmt=fmt))
            written.append(path.name)
    signed = check(compliance, load_public_key(settings.public_key_path))["valid"]
    echo(
        f"  subject report for one customer: {len(subject['events'])} operations, "
        f"{len(subject['recipients'])} recipients, {len(subject['lookups'])} lookups of them in the trail"
    )
    echo(
        f"  compliance report for the demo day: {compliance['events_total']['events']} operations, "
        f"{compliance['bulk_operations']['total']} bulk operations flagged, signature "
        f"{'checks' if signed else 'DOES NOT CHECK'} (key {compliance['signature']['key_id']})"
    )
    echo(f"  reports in {out_dir}: {', '.join(written)}")
    echo(
        f"    check offline: trail compliance check {out_dir / 'compliance_report.json'} --public-key "
        f"{settings.public_key_path}"
    )
    return bool(subject["events"]) and signed


def run_demo(settings: Settings, *, fresh: bool, n_events: int = 4000) -> int:
    started = time.monotonic()
    _prepare_dir(settings, fresh)
    echo = click.echo
    echo(f"trail demo: data directory {settings.data_dir}")
    stack = LocalStack(settings).start()
    try:
        echo(f"  local stack up: broker {stack.bootstrap}, API {stack.api_url}")
        key = settings.require_subject_key()
        clients = {
            name: Client(
                service=name,
                transport=KafkaTransport(stack.bootstrap, settings.topic("events")),
                subject_key=key,
                spool_dir=settings.effective_spool_dir,
                environment="demo",
            )
            for name in ("crm", "billing", "marketing")
        }
        plan = simulate(clients, n_events)
        for c in clients.values():
            if not c.close(timeout=30):
                echo("  warning: a client could not deliver everything; it stays in the spool", err=True)
        echo(f"  3 services recorded {plan['sent']} events about {N_SUBJECTS} subjects")
        stored = stack.wait_stored(plan["sent"], timeout=60)
        assert stack.store is not None
        counts = stack.store.counts()
        echo(
            f"  read back from the store: {counts['events']} events, {counts['records']} records, "
            f"{counts['producers']} producers"
        )
        for action, c in counts["by_action"].items():
            echo(f"    {action:<10} {c['events']:>6} events {c['records']:>8} records")

        ref = Pseudonymiser(key).ref(plan["featured"])
        history = stack.store.find_events(subject_ref=ref, limit=50)
        echo(f"  history of one subject (ref {ref[:12]}…), {len(history)} events:")
        for ev in history:
            local = datetime.fromisoformat(ev["occurred_at"]).astimezone(LOCAL_TZ).strftime("%H:%M")
            echo(
                f"    {local}  {ev['actor']['kind']}:{ev['actor']['id']:<14} {ev['action']:<8} "
                f"{','.join(ev['data_categories'])}  ({ev['source']['service']})"
            )
        export = stack.store.find_events(action="export", limit=5)
        if export:
            ev = export[0]
            local = datetime.fromisoformat(ev["occurred_at"]).astimezone(LOCAL_TZ).strftime("%H:%M")
            echo(
                f"  bulk export: {sum(e['record_count'] for e in export)} records about "
                f"{sum(len(e['subject_refs']) for e in export)} customers by {ev['actor']['id']} at {local} local "
                f"to {ev['destination']['kind']} ({len(export)} events)"
            )
        gaps = stack.store.gaps()
        echo("  sequence-gap check: " + ("no gaps in any producer's sequence" if not gaps else f"{len(gaps)} gaps!"))
        for g in gaps:
            echo(f"    {g.producer_id}: seq {g.first_missing}..{g.last_missing} missing")
        alerted = _alerts(stack, echo)
        breach_ok, audit_events = _breach(stack, settings, echo)
        # The deliveries' audit events travel through the broker too: seal only once they are stored.
        stack.wait_stored(plan["sent"] + audit_events, timeout=60)
        intact, proof_ok = _integrity(stack, settings, export[0]["event_id"] if export else "", echo)
        reports_ok = _reports(stack, settings, plan["featured"], echo)
    finally:
        stack.stop()
    ok = (
        stored == plan["sent"]
        and counts["events"] == plan["sent"]
        and not gaps
        and len(history) >= 2
        and intact
        and proof_ok
        and alerted
        and breach_ok
        and reports_ok
    )
    echo(f"  done in {time.monotonic() - started:.1f}s: {'OK' if ok else 'FAILED'}")
    echo(
        f"  explore: trail up --data-dir {settings.data_dir}   then   trail query events --data-dir "
        f"{settings.data_dir} --action export"
    )
    port = settings.api_port or CONSOLE_PORT
    echo(
        f"  console: TRAIL_API_PORT={port} trail up --data-dir {settings.data_dir}   then open "
        f"http://{settings.api_host}:{port}/console/ and log in with the token in {settings.local_token_path}"
    )
    return 0 if ok else 1
