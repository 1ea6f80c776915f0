"""The hostile-input drill: a flood of careless and hostile events, interleaved with good ones,
through every door an event comes in by — the SDK's ``record()``, ``trail emit`` and ``POST
/v1/events`` — against a running local stack (``trail up``'s own parts: Tansu broker, sink,
detector, incident trigger, API, chDB).

    make drills          # runs this after the crash drills
    .venv/bin/python load_tests/hostile.py --inputs 100000 --out load_tests/results/hostile.json

Counted: crashes (a refusal that is not a clear ValidationError, a 5xx, a role that stopped),
good events stored other than exactly once, bad events accepted or stored, refusals that do not
name a field. Then a labelled scenario (a bulk export at night) is recorded after the flood, and
the detector must still raise its alert. The result joins ``drills.json`` as the drill
``hostile_inputs``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from load_tests.drills import event  # noqa: E402
from trail.config import load_settings  # noqa: E402
from trail.errors import ValidationError  # noqa: E402
from trail.local.stack import LocalStack  # noqa: E402
from trail.logging import configure  # noqa: E402
from trail.sdk.client import Client  # noqa: E402
from trail.sdk.transport import KafkaTransport  # noqa: E402

KEY = "hostile-drill-key-not-for-production-0123456789ab"
TRAIL = str(Path(sys.executable).with_name("trail"))
DOORS = ("sdk", "emit", "api")


def good(i: int) -> dict[str, Any]:
    """The crash drills' everyday event, marked so the drill can count it in the store."""
    return {**event(i), "attributes": {"drill": f"good-{i}"}}


def _set(ev: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = ev
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return ev


def _without(ev: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k != key}


#: Hostile changes to a good event, by kind: each returns the event to send (a mapping).
MUTATIONS: dict[str, Callable[[dict[str, Any], random.Random], dict[str, Any]]] = {
    "surrogate_text": lambda e, r: _set(e, "purpose", "ticket \ud800 " + "x" * r.randrange(5)),
    "surrogate_key": lambda e, r: _set(e, "attributes", {"k\udfff": "v"}),
    "surrogate_subject": lambda e, r: _set(e, "subject_ids", ["CUST-\udc00"]),
    "too_many_subjects": lambda e, r: _set(e, "subject_ids", [f"CUST-{k:08d}" for k in range(501 + r.randrange(600))]),
    "huge_text": lambda e, r: _set(e, "purpose", "p" * (70_000 + r.randrange(10_000))),
    "wrong_type_count": lambda e, r: _set(e, "record_count", r.choice(["many", -1, 1.5, True, [1], "1"])),
    "wrong_type_categories": lambda e, r: _set(e, "data_categories", r.choice(["name", 7, [7], [None], {}])),
    "wrong_type_actor": lambda e, r: _set(e, "actor", r.choice([["E1"], "E1", 1, None])),
    "bad_enum": lambda e, r: _set(e, "action", r.choice(["steal", "VIEW", "", "view "])),
    "clock_future": lambda e, r: _set(e, "occurred_at", r.choice(["9999-12-31T23:59:59Z", "2999-01-01T00:00:00Z"])),
    "clock_past": lambda e, r: _set(e, "occurred_at", r.choice(["0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z"])),
    "clock_garbage": lambda e, r: _set(e, "occurred_at", r.choice(["yesterday", "2026-13-45T00:00:00Z", 17, ""])),
    "nesting": lambda e, r: _set(e, "attributes", {"a": {"b": {"c": {"d": "e"}}}}),
    "pi_phone": lambda e, r: _set(e, "attributes", {"callback": f"13{r.randrange(10**9):09d}"}),
    "pi_email": lambda e, r: _set(e, "attributes", {"contact": f"user{r.randrange(999)}@example.cn"}),
    "pi_card": lambda e, r: _set(e, "attributes", {"card": "4111111111111111"}),
    "pi_resident_id": lambda e, r: _set(e, "attributes", {"who": "11010519491231002X"}),
    "unknown_field": lambda e, r: _set(e, "shoe_size", 42),
    "missing_field": lambda e, r: _without(e, r.choice(["purpose", "actor", "action"])),
    "empty_text": lambda e, r: _set(e, "purpose", r.choice(["", "   "])),
}
#: Hostile JSON text (only a line of text can carry these): for ``trail emit`` and the API.
RAW: dict[str, Callable[[dict[str, Any], random.Random], bytes]] = {
    "duplicate_keys": lambda e, r: json.dumps(e)[:-1].encode() + b', "action": "export"}',
    "invalid_utf8": lambda e, r: (
        json.dumps(e).replace("support ticket", "support \x00ticket").encode()[:-1] + b', "purpose": "\xff\xfe"}'
    ),
    "not_json": lambda e, r: r.choice([b"{", b"null", b"[1, 2]", b'{"actor": }', b"\x00\x01"]),
    "nan": lambda e, r: json.dumps({**e, "record_count": float("nan")}).encode(),
}


def flood(n: int, seed: int, good_every: int) -> Iterator[tuple[str, str, Any]]:
    """``(door, kind, payload)``: ``kind`` 'good' or a hostile kind; payload a dict or bytes."""
    rnd = random.Random(seed)
    kinds = list(MUTATIONS)
    for i in range(n):
        door = DOORS[i % 3]
        if i % good_every == 0:
            yield door, "good", good(i)
            continue
        base = good(i)
        base["attributes"] = {"drill": f"bad-{i}"}
        if door != "sdk" and rnd.random() < 0.2:
            kind = rnd.choice(list(RAW))
            yield door, kind, RAW[kind](base, rnd)
        else:
            kind = rnd.choice(kinds)
            yield door, kind, MUTATIONS[kind](base, rnd)


def _line(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload).encode()  # a lone surrogate travels as its JSON escape


def run(
    work: Path, inputs: int = 100_000, good_every: int = 10, seed: int = 7, store: dict[str, str] | None = None
) -> dict[str, Any]:
    """``store``: ``TRAIL_CLICKHOUSE_*`` settings (a test passes its session's chDB and a database)."""
    configure("warning", "json")
    settings = load_settings(
        {
            "TRAIL_DATA_DIR": str(work / "data"),
            "TRAIL_SUBJECT_KEY": KEY,
            "TRAIL_SINK_BATCH_SECONDS": "0.3",
            "TRAIL_API_RATE_PER_PRINCIPAL": "100000",
            **(store or {}),
        },
        config_file=work / "none.toml",
    )
    stack = LocalStack(settings).start()
    result: dict[str, Any] = {"name": "hostile_inputs", "inputs": inputs}
    crashes: list[str] = []
    unnamed: list[str] = []
    bad_accepted: dict[str, int] = {}
    goods: set[str] = set()
    by_kind: dict[str, int] = {}
    try:
        token = settings.local_token_path.read_text().strip()
        client = Client(
            service="hostile-sdk",
            transport=KafkaTransport(stack.bootstrap, settings.topic("events")),
            subject_key=KEY.encode(),
            spool_dir=settings.effective_spool_dir,
        )
        api_lines: list[tuple[str, bytes]] = []
        emit_lines: list[tuple[str, bytes]] = []
        started = time.monotonic()
        for door, kind, payload in flood(inputs, seed, good_every):
            by_kind[kind] = by_kind.get(kind, 0) + 1
            if kind == "good":
                goods.add(payload["attributes"]["drill"])
            if door == "sdk":
                try:
                    client.record(**payload)
                    if kind != "good":
                        bad_accepted[kind] = bad_accepted.get(kind, 0) + 1
                except ValidationError as exc:
                    if kind == "good":
                        crashes.append(f"sdk refused a good event: {exc}")
                    elif not exc.field:
                        unnamed.append(f"sdk {kind}: {exc}")
                except Exception as exc:  # noqa: BLE001  # exactly what the drill counts
                    crashes.append(f"sdk {kind}: {type(exc).__name__}: {str(exc)[:200]}")
            else:
                (api_lines if door == "api" else emit_lines).append((kind, _line(payload)))
        assert client.close(timeout=120), "the SDK did not deliver what it accepted"
        http = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        for k in range(0, len(api_lines), 1000):
            chunk = api_lines[k : k + 1000]
            res = http.post("/v1/events", content=b"\n".join(line for _, line in chunk),
                            headers={"Content-Type": "application/x-ndjson"})  # fmt: skip
            if res.status_code >= 500:
                crashes.append(f"api {res.status_code}: {res.text[:200]}")
                continue
            body = res.json()
            _check_lines("api", chunk, body, bad_accepted, crashes, unnamed)
        emit_file = work / "emit.jsonl"
        emit_file.write_bytes(b"\n".join(line for _, line in emit_lines) + b"\n")
        proc = subprocess.run([TRAIL, "emit", "--file", str(emit_file), "--data-dir", str(settings.data_dir)],
                              capture_output=True, timeout=600, env=_env(settings))  # fmt: skip
        if b"Traceback" in proc.stderr or proc.returncode not in (0, 2):
            crashes.append(f"trail emit exited {proc.returncode}: {proc.stderr[-300:]!r}")
        else:
            _check_lines("emit", emit_lines, json.loads(proc.stdout), bad_accepted, crashes, unnamed)
        result["flood_s"] = round(time.monotonic() - started, 1)

        # a labelled scenario after the flood: a bulk export at 03:00 by E9001 must still raise its alert
        scenario = Client(
            service="hostile-scenario",
            transport=KafkaTransport(stack.bootstrap, settings.topic("events")),
            subject_key=KEY.encode(),
            spool_dir=settings.effective_spool_dir,
        )
        night = (datetime.now(UTC) - timedelta(days=1)).replace(hour=19, minute=0, second=0, microsecond=0)
        scenario.record(
            actor={"kind": "staff", "id": "E9001", "role": "analyst"}, action="export", record_count=20_000,
            subject_ids=[f"CUST-{k:08d}" for k in range(400)], data_categories=["name", "phone"],
            purpose="quarterly analysis", legal_basis="contract", target={"system": "crm", "dataset": "customers"},
            destination={"kind": "file", "name": "export.csv"}, occurred_at=night.isoformat().replace("+00:00", "Z"),
            attributes={"drill": "scenario"},
        )  # fmt: skip
        assert scenario.close(timeout=60)
        assert stack.store is not None
        store = stack.store

        def stored() -> dict[str, int]:
            rows = store.query(
                "SELECT attributes['drill'] AS d, uniqExact(event_id) AS n FROM {db}.events "
                "WHERE mapContains(attributes, 'drill') GROUP BY d"
            )
            return {str(r["d"]): int(r["n"]) for r in rows}

        deadline = time.monotonic() + 300
        counts = stored()
        while sum(1 for g in goods if g in counts) < len(goods) and time.monotonic() < deadline:
            time.sleep(1)
            counts = stored()
        alerts: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120  # the detector's own time, whatever the wait above took
        while time.monotonic() < deadline:
            alerts = store.query("SELECT rule, actor_id FROM {db}.alerts FINAL WHERE actor_id = 'E9001'")
            if any(a["rule"] == "bulk_export" for a in alerts):
                break
            time.sleep(1)
        health = httpx.get(stack.api_url + "/v1/health", timeout=30).json()
        lost = [g for g in goods if counts.get(g, 0) == 0]
        duplicated = [g for g in goods if counts.get(g, 0) > 1]
        bad_stored = sum(n for d, n in counts.items() if d.startswith("bad-"))
        result.update(
            events=len(goods),
            lost=len(lost),
            duplicates=len(duplicated),
            hostile=inputs - len(goods),
            hostile_by_kind={k: v for k, v in sorted(by_kind.items()) if k != "good"},
            bad_accepted=bad_accepted,
            bad_stored=bad_stored,
            crashes=len(crashes),
            crash_samples=crashes[:5],
            refusals_without_field=len(unnamed),
            refusal_samples_without_field=unnamed[:5],
            scenario_alerts=sorted({a["rule"] for a in alerts}),
            stack_health=health.get("status", health),
        )
        result["passed"] = (
            not lost and not duplicated and not bad_accepted and bad_stored == 0 and not crashes and not unnamed
            and "bulk_export" in result["scenario_alerts"]
        )  # fmt: skip
    finally:
        stack.stop()
    return result


def _env(settings: Any) -> dict[str, str]:
    return {**os.environ, "TRAIL_SUBJECT_KEY": KEY, "TRAIL_LOG_FORMAT": "json"}


def _check_lines(
    door: str, lines: list[tuple[str, bytes]], body: dict[str, Any], bad_accepted: dict[str, int], crashes: list[str],
    unnamed: list[str],
) -> None:  # fmt: skip
    """One batch's answer: every good line accepted, every bad one refused, each refusal naming
    its line and, for a bad field, the field (the answer lists the first refusals of a batch)."""
    goods = sum(1 for kind, _ in lines if kind == "good")
    accepted = int(body.get("accepted", -1))
    if accepted > goods:
        bad_accepted[door] = bad_accepted.get(door, 0) + accepted - goods
    if accepted < goods or int(body.get("rejected", -1)) != len(lines) - accepted:
        crashes.append(f"{door}: {accepted} accepted, {body.get('rejected')} refused of {len(lines)} ({goods} good)")
    for err in body.get("errors", []):
        kind = lines[int(err["line"]) - 1][0]
        if kind == "good":
            crashes.append(f"{door}: a good line refused: {str(err.get('error'))[:160]}")
        elif kind in MUTATIONS and ":" not in str(err.get("error", "")):  # a field's fault names the field
            unnamed.append(f"{door} {kind}: {str(err.get('error'))[:120]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--good-every", type=int, default=10, help="one good event in this many inputs")
    ap.add_argument("--out", type=Path, default=ROOT / "load_tests" / "results" / "hostile.json")
    ap.add_argument("--drills", type=Path, default=None, help="also add the result to this drills.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="trail-hostile-") as tmp:
        result = run(Path(tmp), args.inputs, args.good_every)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    if args.drills is not None and args.drills.exists():
        drills = [d for d in json.loads(args.drills.read_text()) if d.get("name") != "hostile_inputs"]
        args.drills.write_text(json.dumps([*drills, result], indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "hostile_by_kind"}, indent=2, ensure_ascii=False))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
