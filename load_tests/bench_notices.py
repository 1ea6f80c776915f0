"""Benchmark: notices to every affected person (PIPL Art. 57) for a 100,000-person incident.

Everything is the real code path of ``trail incidents notify --send``, without the broker:

- **refs**: N random subject refs (64 lowercase hex; none starts with ``0000``, which the example
  resolver treats as unknown, so every person can be reached and files == N is checkable);
- **notice**: a real incident (``IncidentService`` on SQLite: opened, facts, a measure,
  contained), its ``document_context`` and ``trail.notices.workflow.notice_renderer``: the
  individual notice (Markdown → text, and HTML) rendered once per language, as ``workflow.send`` does;
- **ledger**: ``open_ledger`` on the same SQLite file as the incidents (``DATA_DIR/incidents.db``
  in production), or a fresh PostgreSQL schema (dropped afterwards);
- **plan**: ``plan_batch`` with the N refs (then again: must add nothing);
- **send**: ``run_batch`` to ``OutboxChannel`` (one ``.eml`` per person) with the example contact
  resolver, in-process (``examples/contact_resolver.py:ExampleResolver``) or as a program
  (``command:python examples/contact_resolver.py``, one process per 500 refs);
- **on_result**: what ``workflow.send`` does per outcome: one audit event through a real SDK ``Client``
  (``record_pseudonymised``: validation, pseudonym check, queue; the worker sequences, hashes and
  hands batches to a transport that counts and drops them), or ``--audit dumps`` (build the
  event dict and ``orjson.dumps`` it), or ``--audit none``.

Phases (each in a fresh process, so peak RSS is its own):

| phase | ledger | resolver | what |
|---|---|---|---|
| ``sqlite-inproc`` | SQLite | in-process | plan + send |
| ``sqlite-command`` | SQLite | command | plan + send |
| ``sqlite-resume`` | SQLite | in-process | stopped at 50 % (``stop``), resumed (new ledger, channel, resolver) |
| ``postgres-inproc`` | PostgreSQL | in-process | plan + send |
| ``postgres-resume`` | PostgreSQL | in-process | as sqlite-resume |

Each phase also splits the send time into resolver, render, channel, on_result and the rest
(the ledger's two committed updates per person and the batch loop), measured around each call.
``--profile`` adds cProfile's top functions of the send.

Run: ``.venv/bin/python load_tests/bench_notices.py --out load_tests/results/notices.json``
(``--subjects 10000`` for a quick run; ``--phases sqlite-inproc,sqlite-resume`` for a subset).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load_tests.machine import machine_busy_s
from load_tests.machine import machine_info as base_machine_info

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "contact_resolver.py"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PHASES = {
    "sqlite-inproc": {"ledger": "sqlite", "resolver": "inproc", "resume": False},
    "sqlite-command": {"ledger": "sqlite", "resolver": "command", "resume": False},
    "sqlite-resume": {"ledger": "sqlite", "resolver": "inproc", "resume": True},
    "postgres-inproc": {"ledger": "postgres", "resolver": "inproc", "resume": False},
    "postgres-resume": {"ledger": "postgres", "resolver": "inproc", "resume": True},
}
BY = "E-PI-OFFICER"


# --------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    return {
        **base_machine_info(("trail", "eventsourcing", "psycopg", "jinja2", "orjson")),
        "psycopg_pq_impl": _psycopg_impl(),
        "trail_source_sha256": source_digest(),
    }


def _psycopg_impl() -> str | None:
    try:
        import psycopg

        return str(psycopg.pq.__impl__)
    except ImportError:
        return None


def source_digest() -> str | None:
    """SHA-256 over trail's own source files, to tell which code a result was measured on."""
    import hashlib

    import trail

    root = Path(trail.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".sql", ".json") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _rss_mib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


# --------------------------------------------------------------------------- inputs
def make_refs(n: int, seed: int) -> list[str]:
    """N distinct random subject refs, none starting with the example resolver's "unknown" prefix."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        ref = f"{rng.getrandbits(256):064x}"
        if not ref.startswith("0000"):
            out.add(ref)
    refs = list(out)
    rng.shuffle(refs)  # the ledger orders them itself
    return refs


def realistic_incident(db: Path, people: int) -> tuple[str, str, Callable[[Any], Any], dict[str, int]]:
    """A real incident on SQLite and the notices' renderer over its document context.

    Returns (incident id, reference, render, rendered sizes in bytes per language)."""
    from trail.incidents.application import IncidentService
    from trail.incidents.filing import document_context
    from trail.incidents.playbook import load_playbook
    from trail.notices.model import Contact
    from trail.notices.workflow import notice_renderer

    playbook = load_playbook()
    svc = IncidentService(playbook, sqlite_path=str(db))
    try:
        inc = svc.open(
            title="Customer records exported to a personal cloud drive",
            by="E-SOC-1",
            description="A support account exported customer records in three batches; DLP flagged the upload.",
        )
        facts: list[tuple[str, Any, str]] = [
            ("people_affected", people, "trail evidence 3f2a9c1e7b4d (12 events)"),
            ("sensitive_people", people // 4, "trail evidence 3f2a9c1e7b4d (12 events)"),
            ("categories", ["name", "phone", "address", "id_number"], "trail evidence 3f2a9c1e7b4d (12 events)"),
            ("type", "leak", "SOC triage"),
            ("cause", "An over-broad export permission on a support account", "SOC triage"),
            ("possible_harm", "Fraud calls and phishing using names, phone numbers and ID numbers", "legal"),
            ("location", "Shenzhen data centre, CRM", "SOC triage"),
        ]
        for name, value, source in facts:
            svc.record_fact(inc.id, name, value, source=source, by="E-SOC-1")
        svc.measure(inc.id, "Account disabled, export permission revoked, the cloud share taken down", by="E-SOC-1")
        svc.contain(inc.id, by="E-SOC-1", note="no further exports since 10:40")
        view = svc.view(inc.id)
    finally:
        svc.shutdown()
    ctx = document_context(view, playbook, "Asia/Shanghai")
    render = notice_renderer(ctx)
    sizes = {}
    for lang in ("zh", "en"):
        r = render(Contact("0" * 64, language=lang))
        sizes[lang] = len(r.subject.encode()) + len(r.body_text.encode()) + len(r.body_html.encode())
    return view["id"], view["ref"], render, sizes


class Timed:
    """Seconds and calls spent inside one component (resolver, render, channel, on_result)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        pc = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = pc()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += pc() - t
                self.calls += 1

        return timed


class TimedResolver:
    def __init__(self, inner: Any, timer: Timed) -> None:
        self.inner = inner
        self.resolve = timer.wrap(inner.resolve)


class CountingChannel:
    """The real outbox channel, counting what it was asked to send (a resend would show here)."""

    name = "outbox"

    def __init__(self, inner: Any, timer: Timed) -> None:
        self.inner = inner
        self.notice_ids: Counter[str] = Counter()
        self._send = timer.wrap(inner.send)

    def send(self, message: Any) -> None:
        self._send(message)
        self.notice_ids[message.notice_id] += 1

    def close(self) -> None:
        self.inner.close()


def audit_sink(kind: str, tmp: Path, inc_ref: str) -> tuple[Callable[[Any], None], Callable[[], dict[str, Any]]]:
    """``on_result`` doing what workflow.send does per outcome, and a closer returning its counts."""
    statuses: Counter[str] = Counter()
    if kind == "none":

        def count_only(r: Any) -> None:
            statuses[r.status] += 1

        return count_only, lambda: {"kind": kind, "results": dict(statuses)}

    attributes = lambda r: {  # noqa: E731
        "incident": inc_ref,
        "notice_id": r.notice_id,
        "batch": r.batch_id,
        "channel": r.channel,
        "delivery": r.status,
        "attempt": str(r.attempt),
    }
    purpose = f"notice to the individual of incident {inc_ref} (PIPL Art. 57)"
    if kind == "dumps":
        import orjson

        size = [0]

        def dumps(r: Any) -> None:
            statuses[r.status] += 1
            ev = {
                "schema": "trail.audit/v1",
                "event_id": str(uuid.uuid4()),
                "occurred_at": r.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "actor": {"kind": "staff", "id": BY},
                "action": "use",
                "subject_refs": [r.subject_ref],
                "record_count": 1,
                "data_categories": ["email"],
                "purpose": purpose,
                "legal_basis": "law",
                "source": {"service": "trail-notices", "host": "bench", "environment": "production"},
                "target": {"system": "trail-notices", "dataset": inc_ref},
                "outcome": "success" if r.status == "sent" else "error",
                "attributes": attributes(r),
            }
            size[0] += len(orjson.dumps(ev))

        return dumps, lambda: {"kind": kind, "results": dict(statuses), "bytes": size[0]}

    from trail.sdk.client import Client
    from trail.sdk.transport import CallbackTransport
    from trail.testing import TEST_KEY

    handed = [0, 0]

    def drop(_key: bytes, values: list[bytes]) -> None:
        handed[0] += len(values)
        handed[1] += sum(len(v) for v in values)

    client = Client(
        service="trail-notices",
        transport=CallbackTransport(drop),
        subject_key=TEST_KEY,
        spool_dir=tmp / "spool",
    )

    def record(r: Any) -> None:  # workflow.send's on_result
        statuses[r.status] += 1
        client.record_pseudonymised(
            subject_refs=[r.subject_ref],
            actor={"kind": "staff", "id": BY},
            action="use",
            data_categories=["email"],
            purpose=purpose,
            legal_basis="law",
            target={"system": "trail-notices", "dataset": inc_ref},
            outcome="success" if r.status == "sent" else "error",
            attributes=attributes(r),
        )

    def close() -> dict[str, Any]:
        t = time.perf_counter()
        ok = client.close(timeout=120)
        return {
            "kind": kind,
            "results": dict(statuses),
            "events_handed_to_transport": handed[0],
            "bytes": handed[1],
            "drained": ok,
            "close_s": round(time.perf_counter() - t, 3),
        }

    return record, close


# --------------------------------------------------------------------------- one phase
def _ledger_target(kind: str, tmp: Path, schema: str) -> tuple[str, dict[str, str]]:
    if kind == "sqlite":
        return str(tmp / "incidents.db"), {}
    return PG_DSN, {"schema": schema}


def _count_files(folder: Path) -> tuple[int, int, int]:
    """(.eml files, temporary files left, total bytes) in the incident's outbox folder."""
    files = tmp = size = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):
                tmp += 1
            elif entry.name.endswith(".eml"):
                files += 1
                size += entry.stat().st_size
    return files, tmp, size


#: Functions whose cumulative time the profile reports (name as cProfile shows it).
PROFILE_CUMULATIVE = (
    "build_email",
    "as_bytes",
    "send",
    "_start",
    "_finish",
    "_page",
    "record_pseudonymised",
    "resolve",
    "render_for",
)


def _area(file: str) -> str:
    if "/email/" in file:
        return "stdlib email (MIME build and serialisation)"
    if "trail/sdk" in file or "trail/events" in file:
        return "trail SDK (audit event)"
    if "trail/incidents" in file:
        return "trail notices, delivery"
    if "psycopg" in file:
        return "psycopg"
    if file == "~":
        return "C builtins (sqlite3, file I/O, str)"
    return "other Python"


def _profile(prof: cProfile.Profile, n: int = 20) -> dict[str, Any]:
    st = pstats.Stats(prof, stream=io.StringIO())
    raw = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    rows = []
    areas: Counter[str] = Counter()
    cumulative: dict[str, float] = {}
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in raw.items():
        rows.append((tt, ct, nc, f"{Path(file).name}:{line}({fn})"))
        areas[_area(file)] += tt
        if fn in PROFILE_CUMULATIVE and ("trail" in file or "email" in file):
            key = f"{Path(file).name}:{fn}"
            cumulative[key] = max(cumulative.get(key, 0.0), ct)
    rows.sort(reverse=True)
    return {
        "profiled_s": round(total, 2),
        "self_share_by_area": {k: round(v / total, 3) for k, v in areas.most_common()},
        "cumulative_share": {k: round(v / total, 3) for k, v in sorted(cumulative.items(), key=lambda kv: -kv[1])},
        "top_self": [
            {"function": name, "self_share": round(tt / total, 3), "cum_share": round(ct / total, 3), "calls": nc}
            for tt, ct, nc, name in rows[:n]
        ],
    }


def run_phase(name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """One phase, in its own process."""
    from trail.logging import configure
    from trail.notices.channels import OutboxChannel
    from trail.notices.ledger import open_ledger
    from trail.notices.resolvers import load_resolver
    from trail.notices.runner import deliveries, plan_batch, run_batch

    configure("warning", "json")
    spec = PHASES[name]
    n = int(opts["subjects"])
    tmp = Path(tempfile.mkdtemp(prefix=f"trail-bench-notices-{name}-", dir=opts.get("tmp_dir")))
    schema = f"bench_notices_{uuid.uuid4().hex[:10]}"
    # the code this phase measured (a phase imports trail when it starts)
    out: dict[str, Any] = {"phase": name, **spec, "subjects": n, "audit": opts["audit"], "source": source_digest()}
    ledger: Any = None
    try:
        t = time.perf_counter()
        refs = make_refs(n, int(opts["seed"]))
        out["generate_refs_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        incident_id, inc_ref, render, sizes = realistic_incident(tmp / "incidents.db", n)
        out["incident_and_render_setup_s"] = round(time.perf_counter() - t, 3)
        out["notice_bytes_per_language"] = sizes
        target, kw = _ledger_target(spec["ledger"], tmp, schema)
        if spec["ledger"] == "postgres":
            out["postgres_schema"] = schema

        def resolver_for() -> Any:
            if spec["resolver"] == "command":
                return load_resolver(f"command:{sys.executable} {EXAMPLE}")
            return load_resolver(f"{EXAMPLE}:ExampleResolver")

        # -- plan
        ledger = open_ledger(target, **kw)
        t = time.perf_counter()
        batch_id = plan_batch(ledger, incident_id, refs, "outbox")
        out["plan_s"] = round(time.perf_counter() - t, 3)
        # again, as the next `notify --send` (a new process, a new connection) does
        ledger.close()
        ledger = open_ledger(target, **kw)
        t = time.perf_counter()
        again = plan_batch(ledger, incident_id, refs, "outbox")
        out["replan_s"] = round(time.perf_counter() - t, 3)
        info = ledger.batch(batch_id)
        out["planned"] = info.total if info else None
        out["replan_same_batch_adds_nothing"] = bool(again == batch_id and info and info.total == n)

        # -- send (once, or stopped at the half and resumed by "another process")
        timers = {k: Timed() for k in ("resolver", "render", "channel", "on_result")}
        on_result, close_audit = audit_sink(opts["audit"], tmp, inc_ref)
        timed_render = timers["render"].wrap(render)
        timed_result = timers["on_result"].wrap(on_result)
        outbox = tmp / "outbox"
        channels: list[CountingChannel] = []
        runs: list[dict[str, Any]] = []
        rss_before = _rss_mib()
        cpu0 = time.process_time()
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0 = machine_busy_s()
        stop_at = n // 2 if spec["resume"] else None
        prof = cProfile.Profile() if opts.get("profile") else None
        send_started = time.perf_counter()
        resume_plan_s = 0.0
        for attempt in range(2 if spec["resume"] else 1):
            if attempt == 1:  # `notify --send` again: a new process opens everything and plans again
                ledger.close()
                ledger = open_ledger(target, **kw)
                t = time.perf_counter()
                out["resume_plan_same_batch"] = plan_batch(ledger, incident_id, refs, "outbox") == batch_id
                resume_plan_s = time.perf_counter() - t
                out["resume_plan_s"] = round(resume_plan_s, 3)
            stop = threading.Event()

            def progress(done: int, _total: int, stop: threading.Event = stop) -> None:
                if stop_at is not None and done >= stop_at:
                    stop.set()

            channel = CountingChannel(OutboxChannel(outbox), timers["channel"])
            channels.append(channel)
            resolver = TimedResolver(resolver_for(), timers["resolver"])
            t = time.perf_counter()
            if prof is not None:
                prof.enable()
            summary = run_batch(
                ledger,
                batch_id,
                resolver=resolver,
                channel=channel,
                render=timed_render,
                on_result=timed_result,
                progress=progress if attempt == 0 else None,
                stop=stop,
            )
            if prof is not None:
                prof.disable()
            runs.append(
                {
                    "elapsed_s": round(time.perf_counter() - t, 3),
                    "sent_total": summary.sent,
                    "pending": summary.pending,
                    "in_doubt": summary.in_doubt,
                    "failed": summary.failed,
                    "interrupted": summary.interrupted,
                    "channel_calls": sum(channel.notice_ids.values()),
                }
            )
        send_s = time.perf_counter() - send_started - resume_plan_s
        del refs
        cpu_s = time.process_time() - cpu0
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy = machine_busy_s() - busy0
        children_cpu = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
        audit = close_audit()
        files, tmp_left, outbox_bytes = _count_files(outbox / incident_id)
        per_notice: Counter[str] = Counter()
        for ch in channels:
            per_notice.update(ch.notice_ids)
        counts = deliveries(ledger, incident_id)
        accounted = sum(t.seconds for t in timers.values())
        out.update(
            {
                "send_s": round(send_s, 3),
                "notices_per_s": round(n / send_s, 1),
                "send_us_per_notice": round(send_s / n * 1e6, 1),
                "send_cpu_s_this_process": round(cpu_s, 2),
                "send_cpu_s_children": round(children_cpu, 2),
                "send_cpu_share_of_one_core": round((cpu_s + children_cpu) / send_s, 2),
                # everything else the machine did meanwhile (the PostgreSQL server counts here)
                "other_processes_share_of_machine": round(
                    max(0.0, busy - cpu_s - children_cpu) / (send_s * (os.cpu_count() or 1)), 3
                ),
                "runs": runs,
                "ledger_counts": {k: v for k, v in counts.items() if v},
                "outbox_files": files,
                "outbox_temp_files_left": tmp_left,
                "outbox_mib": round(outbox_bytes / 2**20, 1),
                "channel_calls": sum(per_notice.values()),
                "distinct_notices_sent": len(per_notice),
                "notices_sent_twice": sum(1 for v in per_notice.values() if v > 1),
                "files_equal_subjects": files == n,
                "no_duplicates": files == n and sum(per_notice.values()) == n and len(per_notice) == n,
                "audit": audit,
                "time_split_s": {
                    **{k: round(v.seconds, 2) for k, v in timers.items()},
                    "ledger_and_loop": round(send_s - accounted, 2),
                },
                "time_split_us_per_notice": {
                    **{k: round(v.seconds / n * 1e6, 1) for k, v in timers.items()},
                    "ledger_and_loop": round((send_s - accounted) / n * 1e6, 1),
                },
                "resolver_calls": timers["resolver"].calls,
                "rss_before_send_mib": rss_before,
                "rss_after_send_mib": _rss_mib(),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "peak_rss_children_mib": resolver_process_rss_mib() if spec["resolver"] == "command" else None,
            }
        )
        if spec["resume"]:
            first = runs[0]
            out["stopped_at"] = first["sent_total"]
            out["stopped_at_share"] = round(first["sent_total"] / n, 3)
            out["resumed_sent"] = runs[1]["channel_calls"]
        if prof is not None:
            out["profile"] = _profile(prof)
        return out
    finally:
        if ledger is not None:
            with contextlib.suppress(Exception):
                ledger.close()
        if spec["ledger"] == "postgres":
            with contextlib.suppress(Exception):
                import psycopg

                with psycopg.connect(PG_DSN, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                out["postgres_schema_dropped"] = True
        if not opts.get("keep"):
            shutil.rmtree(tmp, ignore_errors=True)


def resolver_process_rss_mib() -> float | None:
    """Peak RSS of one command-resolver process answering a full chunk (500 refs).

    Measured from a small launcher: ru_maxrss of a child counts the image it was forked from,
    so measuring from the benchmark's own (larger) process would report that instead."""
    import subprocess

    launcher = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], input=sys.stdin.buffer.read(), stdout=subprocess.DEVNULL, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    refs = "".join(json.dumps({"subject_ref": r}) + "\n" for r in make_refs(500, 1)).encode()
    try:
        done = subprocess.run(
            [sys.executable, "-c", launcher, sys.executable, str(EXAMPLE)],
            input=refs,
            capture_output=True,
            check=True,
            timeout=60,
        )
        return round(int(done.stdout.decode().strip()) / 1024, 1)
    except (subprocess.SubprocessError, ValueError, OSError):
        return None


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001  # any reason means: skip its phases
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def summary_line(r: Mapping[str, Any]) -> str:
    split = r["time_split_us_per_notice"]
    parts = ", ".join(f"{k} {v}" for k, v in split.items())
    extra = (
        f"; stopped at {r['stopped_at']}, resumed {r['resumed_sent']} (its plan_batch {r['resume_plan_s']} s)"
        if "stopped_at" in r
        else ""
    )
    return (
        f"{r['phase']}: plan {r['plan_s']} s (replan {r['replan_s']} s), send {r['send_s']} s = "
        f"{r['notices_per_s']:,.0f} notices/s; peak RSS {r['peak_rss_mib']} MiB "
        f"(resolver process {r['peak_rss_children_mib']} MiB); files {r['outbox_files']}, duplicates "
        f"{r['notices_sent_twice']}{extra}\n    µs/notice: {parts}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--subjects", type=int, default=100_000, help="people to notify (default 100,000)")
    ap.add_argument("--phases", default=",".join(PHASES), help=f"any of {', '.join(PHASES)}")
    ap.add_argument("--audit", choices=("sdk", "dumps", "none"), default="sdk", help="what on_result does")
    ap.add_argument("--seed", type=int, default=57)
    ap.add_argument("--profile", action="store_true", help="cProfile the send; top functions in the JSON")
    ap.add_argument("--tmp-dir", default=None, help="where the ledgers and outboxes go (default: the system's)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    ap.add_argument("--out", default=None, help="write the results here (JSON)")
    args = ap.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        ap.error(f"unknown phase(s) {', '.join(unknown)}; use {', '.join(PHASES)}")
    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "notices to every affected person (plan_batch + run_batch to the outbox)",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": {
            "subjects": args.subjects,
            "phases": phases,
            "audit": args.audit,
            "seed": args.seed,
            "channel": "outbox (OutboxChannel, fsync=False)",
            "resolver_chunk": 500,
        },
        "definitions": {
            "plan_s": "plan_batch with the N refs, one transaction",
            "replan_s": "plan_batch again with the same refs on a new ledger connection, as the next "
            "`notify --send` does (adds nothing)",
            "resume_plan_s": "resume phases: the plan_batch of the resuming run (not in send_s)",
            "send_s": "run_batch(s) from start to summary, both runs of a stop-and-resume; excludes the resuming "
            "run's plan_batch and closing the audit client",
            "notices_per_s": "N / send_s",
            "time_split": "time inside the resolver, render, channel.send and on_result; the rest is the ledger "
            "(two committed UPDATEs per person, the page reads) and the batch loop",
            "peak_rss_mib": "ru_maxrss of the phase's own process (a fresh one per phase)",
            "peak_rss_children_mib": "command resolver: peak RSS of one resolver process answering 500 refs",
        },
        "phases": {},
    }
    why_not = postgres_available() if any(PHASES[p]["ledger"] == "postgres" for p in phases) else None
    if why_not:
        result["postgres_skipped"] = why_not
        print(f"PostgreSQL not available ({why_not}): its phases are skipped", flush=True)
        phases = [p for p in phases if PHASES[p]["ledger"] != "postgres"]
    opts = {
        "subjects": args.subjects,
        "seed": args.seed,
        "audit": args.audit,
        "profile": args.profile,
        "tmp_dir": args.tmp_dir,
        "keep": args.keep,
    }
    mp = multiprocessing.get_context("spawn")
    for name in phases:
        print(f"{name}: running with {args.subjects:,} subjects ...", flush=True)
        with mp.Pool(1) as pool:
            r = pool.apply(run_phase, (name, opts))
        result["phases"][name] = r
        print(summary_line(r), flush=True)
    ok = all(
        r["no_duplicates"] and r["replan_same_batch_adds_nothing"] and r.get("resume_plan_same_batch", True)
        for r in result["phases"].values()
    )
    result["all_checks_passed"] = ok
    sources = {r["source"] for r in result["phases"].values()} | {result["machine"]["trail_source_sha256"]}
    result["same_source_in_every_phase"] = len(sources) == 1
    if len(sources) > 1:
        print(f"WARNING: trail's source changed during the run ({', '.join(sorted(s for s in sources if s))})")
    result["wall_s"] = round(time.monotonic() - started, 1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
