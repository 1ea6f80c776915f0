"""Reports made on the data directory itself (no API running) are audited reads too: the access
log event the API would have written, through an SDK client of the access log's service
(its own producer chain, sealed like any other), under the local principal."""

from __future__ import annotations

import uuid

from trail.access.principals import LOCAL, Principal
from trail.access.recorder import ACCESS_SERVICE, AccessNote, AccessRecorder
from trail.config import Settings
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport
from trail.storage.store import Store
from trail.storage.writer import store_writer


def record_direct_read(
    settings: Settings,
    store: Store,
    *,
    role: str,
    command: str,
    dataset: str,
    purpose: str,
    rows: int,
    subject_id: str | None = None,
) -> None:
    """One access-log event for a read made on the data directory, delivered before returning."""
    client = Client(
        service=ACCESS_SERVICE,
        transport=CallbackTransport(store_writer(store)),
        subject_key=settings.require_subject_key(),
        spool_dir=settings.effective_spool_dir,
        spool_max_bytes=settings.spool_max_bytes,
        environment=settings.mode,
    )
    try:
        AccessRecorder(client).record(
            principal=Principal(LOCAL, "staff", (role,)),
            role=role,
            method="CLI",
            endpoint=command,
            status=200,
            ip=None,
            request_id=str(uuid.uuid4()),
            note=AccessNote(
                dataset=dataset,
                rows=rows,
                subject_ids=[subject_id] if subject_id else [],
                purpose=purpose,
                action="query",
                attributes={"mode": "direct"},
            ),
        )
    finally:
        client.close(timeout=30)
