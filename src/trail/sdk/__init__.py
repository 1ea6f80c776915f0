"""trail's SDK: record every operation on personal information.

    from trail.sdk import connect

    trail = connect(service="crm")            # once, at start-up
    trail.record(
        actor={"kind": "staff", "id": "E1001", "role": "support"},
        action="view",
        subject_ids=[customer_id],            # pseudonymised before it leaves the process
        data_categories=["name", "phone"],
        purpose="answer support ticket",
        legal_basis="contract",
        target={"system": "crm", "dataset": "customers"},
        attributes={"ticket": "T-1234"},
    )
    trail.close()                             # at shutdown: flush, then stop

``connect`` reads the settings (``TRAIL_*``); :class:`Client` takes everything explicitly.
"""

from __future__ import annotations

from typing import Any

from trail.config import Settings, kafka_options, load_settings, resolve_bootstrap
from trail.events.model import Policy
from trail.sdk.client import Client, ClientStats, Operation
from trail.sdk.pseudonymise import Pseudonymiser
from trail.sdk.transport import CallbackTransport, KafkaTransport, Transport

__all__ = [
    "CallbackTransport",
    "Client",
    "ClientStats",
    "KafkaTransport",
    "Operation",
    "Pseudonymiser",
    "Transport",
    "connect",
    "policy_for",
]


def policy_for(settings: Settings) -> Policy:
    """The acceptance policy of the settings (``TRAIL_MAX_CLOCK_SKEW``, ``TRAIL_REFUSE_PERSONAL_DATA``)."""
    return Policy(max_clock_skew_s=settings.max_clock_skew, refuse_personal_data=settings.refuse_personal_data)


def connect(service: str, *, settings: Settings | None = None, **options: Any) -> Client:
    """A client for ``service`` wired from the settings: Kafka transport, key, spool."""
    s = settings or load_settings()
    bootstrap = resolve_bootstrap(s)
    transport = KafkaTransport(bootstrap, s.topic("events"), extra=kafka_options(s))
    return Client(
        service=service,
        transport=transport,
        subject_key=s.require_subject_key(),
        spool_dir=s.effective_spool_dir,
        spool_max_bytes=s.spool_max_bytes,
        **{"policy": policy_for(s), **options},
    )
