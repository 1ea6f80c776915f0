"""Everything trail writes under its data directory and outbox is private (dirs 0700, files 0600),
even when the process umask would make it world-readable."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from trail.access.sqlite import SqliteDatabase
from trail.config import load_settings
from trail.files import private_dir, write_private
from trail.integrity.checkpoint import AppendOnlyLog
from trail.integrity.keys import generate, write_keypair
from trail.notices.channels import OutboxChannel
from trail.notices.ledger import NoticeLedger
from trail.notices.model import Contact, OutgoingNotice, notice_id_for
from trail.sdk.client import Client
from trail.sdk.spool import Spool
from trail.sdk.transport import CallbackTransport
from trail.wiring import incident_service

EXTRA = {"purpose": "answer support ticket", "legal_basis": "contract", "target": {"system": "crm"}}


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(root: Path) -> None:
    """``root`` and everything under it: directories 0700, files 0600."""
    seen = 0
    for p in [root, *root.rglob("*")]:
        seen += 1
        want = 0o700 if p.is_dir() else 0o600
        assert mode(p) == want, f"{p.relative_to(root.parent)} is {oct(mode(p))}, want {oct(want)}"
    assert seen > 1


def test_notice_files_in_the_outbox_are_private(tmp_path: Path) -> None:
    """A notice file holds a name, an address and a phone number: only the trail's user may read it."""
    ref = hashlib.sha256(b"someone").hexdigest()
    contact = Contact(ref, email="someone@example.invalid", phone="+86 000", name="Someone", language="en")
    notice = OutgoingNotice(
        notice_id_for("inc-2026-0001", ref), "inc-2026-0001", ref, contact, "en", "s", "b", "<p>b</p>"
    )
    outbox = tmp_path / "outbox"
    OutboxChannel(outbox).send(notice)
    assert_private(outbox)


def test_incident_database_and_its_ledgers_are_private(tmp_path: Path) -> None:
    """The incident store (SQLite), the notice ledger and the access store in the same file are 0600."""
    settings = load_settings(data_dir=tmp_path / "data")
    service = incident_service(settings)
    try:
        db = settings.incident_store_path
        NoticeLedger.sqlite(db).close()
        SqliteDatabase(db).close()
        assert mode(db) == 0o600
        assert_private(db.parent)
    finally:
        service.shutdown()


def test_spool_segments_and_overflow_journal_are_private(tmp_path: Path) -> None:
    """Spooled events wait on disk in clear (refs, not ids, but still the trail): 0600 in 0700."""
    root = tmp_path / "spool"
    spool = Spool(root / "one", 1 << 20)
    spool.append(b"k", [b'{"a":1}'])
    spool.close()

    def down(_key: bytes, _values: object) -> None:
        from trail.errors import TransportUnavailable

        raise TransportUnavailable("down")

    client = Client(
        service="svc", transport=CallbackTransport(down), subject_key=b"k" * 32, spool_dir=root, retry_interval_s=0.05
    )
    client.record(
        actor={"kind": "staff", "id": "E1"}, action="view", subject_ids=["x"], data_categories=["phone"], **EXTRA
    )
    client.flush(timeout=2)
    client.close(timeout=2)
    assert any(root.rglob("seg-*.log"))
    assert_private(root)


def test_keys_and_checkpoint_log_are_private(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    write_keypair(keys, generate())
    AppendOnlyLog(keys / "checkpoints.jsonl").append({"seq": 1})
    assert_private(keys)


def test_helpers_tighten_what_exists(tmp_path: Path) -> None:
    """A data directory made earlier with a loose mode is tightened; a rewritten file is 0600."""
    d = tmp_path / "data"
    d.mkdir(mode=0o755)
    (d / "server.json").write_text("{}")
    os.chmod(d / "server.json", 0o644)
    private_dir(d)
    write_private(d / "server.json", b"{}")
    assert_private(d)
