"""A running local stack (broker, sink, detectors, incident trigger, API with the console) with
the demo's simulated day recorded once, for the console's browser tests: the 03:00 bulk export
by E2042, its alerts and the incident it opened; one principal per role and a second responder."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from trail.config import Settings, load_settings
from trail.local.demo import simulate
from trail.local.stack import LocalStack
from trail.sdk.client import Client
from trail.sdk.transport import KafkaTransport
from trail.testing import TEST_KEY

#: principal -> roles (each role alone; responder2 is the second pair of eyes for notices)
PRINCIPALS: dict[str, list[str]] = {
    "ana": ["analyst"],
    "ivy": ["investigator"],
    "rex": ["responder"],
    "rose": ["responder"],
    "aud": ["auditor"],
    "adm": ["admin"],
}


@dataclass
class ConsoleStack:
    stack: LocalStack
    settings: Settings
    url: str
    tokens: dict[str, str] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)

    @property
    def incidents(self) -> Any:
        return self.stack.incidents

    def access_log(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        assert self.stack.services.recorder.client.flush(timeout=timeout)
        assert self.stack.store is not None
        time.sleep(0.5)
        return self.stack.store.find_events(service="trail-access", limit=100_000, newest_first=True)


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def start_console_stack(base: Path, chdb_path: Path) -> Iterator[ConsoleStack]:
    """The stack over the test session's chDB (one engine path per process), in a database of its own."""
    resolver = f"command:{sys.executable} {ROOT / 'examples' / 'contact_resolver.py'}"
    settings = load_settings(
        {
            "TRAIL_DATA_DIR": str(base / "data"),
            "TRAIL_SUBJECT_KEY": TEST_KEY.decode(),
            "TRAIL_CLICKHOUSE_DSN": f"chdb://{chdb_path}",
            "TRAIL_CLICKHOUSE_DATABASE": f"console_{uuid.uuid4().hex[:10]}",
            "TRAIL_SINK_BATCH_SECONDS": "0.2",
            "TRAIL_CHECKPOINT_SECONDS": "1",
            "TRAIL_CONTACT_RESOLVER": resolver,
            "TRAIL_API_RATE_PER_PRINCIPAL": "100000",
            "TRAIL_API_AUTH_FAILURES_PER_MINUTE": "100000",
        },
        config_file=base / "none.toml",
    )
    stack = LocalStack(settings).start()
    try:
        clients = {
            name: Client(
                service=name,
                transport=KafkaTransport(stack.bootstrap, settings.topic("events")),
                subject_key=TEST_KEY,
                spool_dir=settings.effective_spool_dir,
                environment="demo",
            )
            for name in ("crm", "billing", "marketing")
        }
        plan = simulate(clients, 2400)
        for c in clients.values():
            assert c.close(timeout=60)
        stack.wait_stored(plan["sent"], timeout=120)

        def export_incident() -> str | None:
            for row in stack.incidents.summaries():
                view = stack.incidents.show(row["ref"])
                if any(a["rule"] == "bulk_export" for a in view["alerts"]):
                    return str(view["ref"])
            return None

        ref = wait(export_incident, 120, "the incident of the bulk export")
        plan["incident"] = ref
        cs = ConsoleStack(stack, settings, stack.api_url + "/console", plan=plan)
        access = stack.services.access
        for name, roles in PRINCIPALS.items():
            access.add_principal(name, roles, by="test")
            _tok, secret = access.create_token(name, by="test", expires_at=None)
            cs.tokens[name] = secret
        yield cs
    finally:
        stack.stop()
