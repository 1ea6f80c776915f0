"""After ``trail demo`` (2,000 notices sent to the outbox), no contact detail and no raw subject id is
anywhere but in the notice messages themselves.

Contact details are those ``examples/contact_resolver.py`` invents from a subject ref (e-mail
``person-<ref[:12]>@example.invalid``, phone ``+86139........``, name ``Test Person XXXXXX``);
raw subject ids are the demo's ``CUST-000001`` .. ``CUST-002000``. One demo run (module-scoped)
feeds every test here; the notices are then resumed once, which must send nothing new.
"""

from __future__ import annotations

import contextlib
import email
import importlib.util
import json
import re
import sqlite3
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TRAIL, trail_env

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]

RESOLVER = ROOT / "examples" / "contact_resolver.py"
N_SUBJECTS = 2000
RAW_IDS = {f"CUST-{i:06d}" for i in range(1, N_SUBJECTS + 1)}
NOTICE_ATTRIBUTES = {"incident", "notice_id", "batch", "channel", "delivery", "attempt", "sent_by", "approved_by"}


def _fake_contact() -> Any:
    spec = importlib.util.spec_from_file_location("example_contact_resolver", RESOLVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fake_contact


fake_contact = _fake_contact()


def run(*args: str, data: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRAIL, *args, "--data-dir", str(data)], capture_output=True, text=True, timeout=300,
                          env=env or trail_env(), check=False)  # fmt: skip


def jsonl(res: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert res.returncode == 0, res.stderr[-3000:]
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


@dataclass
class Demo:
    data: Path
    out: str
    err: str
    events: list[dict[str, Any]]
    notices: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    incident: dict[str, Any]
    timeline: list[dict[str, Any]]
    contacts: dict[str, dict[str, Any]]  # ref -> the contact the example resolver gives (known refs only)
    status: dict[str, Any]
    resend: subprocess.CompletedProcess[str]
    notices_after: list[dict[str, Any]]
    eml_before: int

    @property
    def ref(self) -> str:
        return str(self.incident["ref"])


def notice_events(data: Path) -> list[dict[str, Any]]:
    rows = jsonl(run("query", "events", "--action", "use", "--format", "json", "--limit", "100000", data=data))
    return [r for r in rows if r.get("target", {}).get("system") == "trail-notices"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    data = tmp_path_factory.mktemp("privacy") / "demo"
    res = subprocess.run([TRAIL, "demo", "--data-dir", str(data), "--fresh"], capture_output=True, text=True,
                         timeout=300, env=trail_env(), check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    events = jsonl(run("query", "events", "--format", "json", "--limit", "100000", data=data))
    notices = notice_events(data)
    (ref,) = {n["attributes"]["incident"] for n in notices}
    incident = json.loads(run("incidents", "show", ref, "--format", "json", data=data).stdout)
    timeline = jsonl(run("incidents", "timeline", ref, "--format", "json", data=data))
    alerts = jsonl(run("alerts", "list", "--format", "json", "--limit", "100000", data=data))
    contacts = {}
    for n in notices:
        for r in n["subject_refs"]:
            found = fake_contact(r)
            if found is not None:
                contacts[r] = found
    st = run("incidents", "notify", ref, "--status", "--by", "E1", data=data)
    assert st.returncode == 0, st.stderr
    eml_before = len(list((data / "outbox" / "notices").rglob("*.eml")))
    env = trail_env(TRAIL_CONTACT_RESOLVER=f"command:{sys.executable} {RESOLVER}")
    resend = run("incidents", "notify", ref, "--send", "--by", "E1002", data=data, env=env)
    return Demo(
        data=data, out=res.stdout, err=res.stderr, events=events, notices=notices, alerts=alerts, incident=incident,
        timeline=timeline, contacts=contacts, status=json.loads(st.stdout), resend=resend,
        notices_after=notice_events(data), eml_before=eml_before,
    )  # fmt: skip


# --------------------------------------------------------------------------- the scanner
EMAIL = re.compile(r"person-[0-9a-f]{12}")
NAME = re.compile(r"Person [0-9A-F]{6}(?![0-9A-Za-z])")
PHONE = re.compile(r"(?<![0-9])(?:\+?86)?(139[0-9]{8})(?![0-9])")
RAW_ID = re.compile(r"CUST-[0-9]{6}")


def leaks(text: str, demo: Demo) -> list[str]:
    """Contact details (any the example resolver could invent; phones: those of the demo's subjects) and
    raw subject ids found in ``text``."""
    phones = {c["phone"].removeprefix("+86") for c in demo.contacts.values()}
    found = EMAIL.findall(text) + NAME.findall(text) + RAW_ID.findall(text)
    found += [p for p in PHONE.findall(text) if p in phones]
    return sorted(set(found))[:20]


def sqlite_dump(path: Path) -> str:
    """Every row of every table of a SQLite file, as text (blobs decoded, zlib-compressed ones inflated)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    out: list[str] = []
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert tables
        for t in tables:
            for row in con.execute(f'SELECT * FROM "{t}"'):
                cells = []
                for v in row:
                    if isinstance(v, bytes):
                        with contextlib.suppress(zlib.error):
                            v = zlib.decompress(v)
                        v = v.decode("utf-8", "replace")
                    cells.append(str(v))
                out.append(f"{t}: " + " | ".join(cells))
    finally:
        con.close()
    return "\n".join(out)


def test_the_scanner_finds_what_it_looks_for(demo: Demo) -> None:
    """The contacts are computed for every notified subject, and the scanner would see each kind of leak."""
    assert len(demo.contacts) >= N_SUBJECTS - 200  # refs starting 0000 are "unknown" to the example resolver
    some = list(demo.contacts.values())[:3]
    sample = " ".join(f"{c['email']} {c['phone']} {c['name']} {c['phone'][3:]}" for c in some) + " CUST-000042"
    assert len(leaks(sample, demo)) == 3 * 3 + 1
    assert leaks(json.dumps(demo.events[:50]), demo) == []


# --------------------------------------------------------------------------- the notices' audit trail
def test_one_audit_event_per_notice_with_one_subject_ref_and_no_contact(demo: Demo) -> None:
    refs = [r for n in demo.notices for r in n["subject_refs"]]
    drafted = demo.incident["notices"]["drafted"]["subjects"]
    assert drafted == N_SUBJECTS
    assert len(demo.notices) == drafted == len(set(refs)), "exactly one audit event per person notified"
    assert len(demo.events) == 4000 + drafted
    for n in demo.notices:
        assert len(n["subject_refs"]) == 1 and re.fullmatch(r"[0-9a-f]{64}", n["subject_refs"][0])
        assert n["action"] == "use" and n["source"]["service"] == "trail-notices"
        assert n["actor"] == {"kind": "system", "id": "trail-notices"}  # the approved job, not a responder
        assert (n["attributes"]["sent_by"], n["attributes"]["approved_by"]) == ("E1002", "E1002")
        assert n["target"] == {"system": "trail-notices", "dataset": demo.ref}
        assert set(n["attributes"]) <= NOTICE_ATTRIBUTES, n["attributes"]
        assert n["attributes"]["incident"] == demo.ref and n["attributes"]["channel"] == "outbox"
        assert n["data_categories"] == ["email"] and n["legal_basis"] == "law"
        known = n["subject_refs"][0] in demo.contacts
        assert (n["outcome"], n["attributes"]["delivery"]) == (("success", "sent") if known else ("error", "failed"))
        assert leaks(json.dumps(n, ensure_ascii=False), demo) == [], n


def test_the_notice_batch_raises_nothing_against_the_responders(demo: Demo) -> None:
    """The approved notice batch is trail's own approved job: no alert names the responders or the
    job, and the only incidents are those the demo's scenario opens (none against a responder)."""
    actors = {a["actor"] for a in demo.alerts}
    assert not actors & {"E1001", "E1002", "trail-notices"}, sorted(actors)
    listed = jsonl(run("incidents", "list", "--format", "json", data=demo.data))
    titles = [str(i.get("title", "")) for i in listed]
    assert titles and not [t for t in titles if "E1001" in t or "E1002" in t or "trail-notices" in t], titles


# --------------------------------------------------------------------------- nowhere else
def test_no_contact_or_raw_id_in_the_incident_store(demo: Demo) -> None:
    db = demo.data / "incidents.db"
    dump = sqlite_dump(db)
    assert demo.ref.removeprefix("INC-").lower() in dump.lower()
    assert sum(1 for line in dump.splitlines() if line.startswith("notice_deliveries: ")) == N_SUBJECTS
    assert leaks(dump, demo) == []
    for f in db.parent.glob("incidents.db*"):  # the raw file, journals and locks: deleted rows included
        assert leaks(f.read_bytes().decode("latin-1"), demo) == [], f
    for view in (demo.incident, demo.timeline):
        assert leaks(json.dumps(view, ensure_ascii=False), demo) == []


def test_no_contact_or_raw_id_in_the_demo_output_logs_and_checkpoints(demo: Demo) -> None:
    assert f"{len(demo.contacts)} sent to the outbox" in demo.out
    assert leaks(demo.out, demo) == [] and leaks(demo.err, demo) == []
    logs = [p for p in demo.data.rglob("*") if p.is_file() and (".log" in p.name or p.suffix == ".jsonl")]
    checkpoints = demo.data / "checkpoints.jsonl"
    assert checkpoints in logs and checkpoints.stat().st_size > 0
    for p in logs:
        assert leaks(p.read_text(encoding="utf-8", errors="replace"), demo) == [], p


def test_no_contact_or_raw_id_in_the_trail_store(demo: Demo) -> None:
    assert leaks(json.dumps(demo.events, ensure_ascii=False), demo) == []
    assert leaks(json.dumps(demo.notices_after, ensure_ascii=False), demo) == []
    assert demo.alerts and leaks(json.dumps(demo.alerts, ensure_ascii=False), demo) == []


def test_no_contact_or_raw_id_in_the_documents(demo: Demo) -> None:
    docs = sorted(p for p in (demo.data / "outbox").glob("INC-*/**/*") if p.is_file())
    names = {p.relative_to(demo.data / "outbox" / demo.ref).as_posix() for p in docs}
    for lang in ("zh", "en"):
        for fmt in ("md", "html"):
            assert f"documents/initial_report.{lang}.{fmt}" in names
            assert f"notice/individual_notice.{lang}.{fmt}" in names
    for p in docs:
        assert leaks(p.read_text(encoding="utf-8"), demo) == [], p


def test_nothing_else_in_the_data_directory_holds_them(demo: Demo) -> None:
    """Every other file (the chDB store's files too, best effort: they are compressed) read as raw bytes."""
    notices_dir = demo.data / "outbox" / "notices"
    scanned = 0
    for p in demo.data.rglob("*"):
        if p.is_file() and notices_dir not in p.parents:
            assert leaks(p.read_bytes().decode("latin-1"), demo) == [], p
            scanned += 1
    assert scanned > 20


def test_the_notice_messages_hold_the_contacts(demo: Demo) -> None:
    """The outbox's .eml files are the messages: each is addressed to its person, none names a raw id."""
    files = sorted((demo.data / "outbox" / "notices").rglob("*.eml"))
    sent = {n["subject_refs"][0] for n in demo.notices if n["attributes"]["delivery"] == "sent"}
    assert len(files) == len(sent) == len(demo.contacts)
    seen = set()
    for f in files:
        raw = f.read_text(encoding="utf-8")
        msg = email.message_from_string(raw)
        ref = msg["X-Trail-Ref"]
        contact = demo.contacts[ref]
        assert contact["email"] in msg["To"] and contact["name"] in msg["To"]
        assert contact["phone"] in raw
        assert RAW_ID.search(raw) is None
        seen.add(ref)
    assert seen == sent


# --------------------------------------------------------------------------- resuming the send
def test_status_after_the_demo_and_a_resumed_send_sends_nothing_new(demo: Demo) -> None:
    unknown = N_SUBJECTS - len(demo.contacts)  # refs the example resolver does not know ("0000...")
    d = demo.status["deliveries"]
    assert d["sent"] == N_SUBJECTS - unknown and d["failed"] == unknown
    assert d["in_doubt"] == 0 and d["pending"] == 0 and d["sending"] == 0
    assert demo.status["batches"][-1]["state"] == "finished"

    assert demo.resend.returncode == (1 if unknown else 0), demo.resend.stderr[-2000:]
    again = json.loads(demo.resend.stdout)
    assert again["state"] == "finished" and again["in_doubt"] == 0 and not again["interrupted"]
    assert again["sent"] == N_SUBJECTS - unknown
    assert len(list((demo.data / "outbox" / "notices").rglob("*.eml"))) == demo.eml_before == N_SUBJECTS - unknown
    assert len(demo.notices_after) == len(demo.notices), "a resumed send records no new deliveries"
    assert leaks(demo.resend.stdout + demo.resend.stderr, demo) == []
