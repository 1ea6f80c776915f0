"""Crash drills: break the pipeline on purpose and count what was lost or duplicated.

    make drills     # = .venv/bin/python load_tests/drills.py --out load_tests/results/drills.json

Every drill runs the real parts (the Tansu broker, the sink as its own process where it is
killed, chDB, SDK clients) and writes one result: ``name``, ``events``, ``lost``, ``duplicates``,
``passed`` and what else it measured. The integration tests (``tests/integration/test_drills.py``)
run the same functions at a smaller size.

* ``sink_sigkill``: the sink SIGKILLed ``kills`` times while 2 services record ``events``; after
  the last restart every event is stored once, ``trail gaps`` is clean and ``trail verify
  --strict`` finds the trail intact with every event sealed.
* ``broker_unreachable``: 3 services record while a fault-injecting TCP proxy between every
  client and the broker cuts the network for ``outage_s``: nothing lost, and each producer's
  events reach the topic in order (the local broker keeps its log in memory, so the network is
  cut rather than the broker stopped, as a Kafka cluster would not forget its log either).
* ``store_unavailable``: the store refuses every insert for ``outage_s`` while services record:
  the sink commits no offset past what is stored, and stores everything once the store is back.
* ``service_sigkill``: a service SIGKILLed mid-stream; ``trail gaps`` reports its lost tail
  ("claimed up to N, the trail holds up to M"); in durable mode nothing is lost.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trail.errors import StoreError  # noqa: E402
from trail.local.broker import LocalBroker, ensure_topics, free_port  # noqa: E402
from trail.sdk.client import Client  # noqa: E402
from trail.sdk.transport import KafkaTransport  # noqa: E402

KEY = "drill-key-not-for-production-use-0123456789abcdef"
NS = "drill."
TRAIL = str(Path(sys.executable).with_name("trail"))


def event(i: int) -> dict[str, Any]:
    return {
        "actor": {"kind": "staff", "id": f"E{i % 40:04d}", "role": "support"},
        "action": "view",
        "subject_ids": [f"CUST-{i:08d}"],
        "data_categories": ["name", "phone"],
        "purpose": "answer support ticket",
        "legal_basis": "contract",
        "target": {"system": "crm", "dataset": "customers"},
    }


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    if not value:
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
    return value


# --------------------------------------------------------------------------- the parts
class FaultProxy:
    """A TCP proxy that can cut the network: ``cut()`` drops every connection and refuses new
    ones until ``restore()``. Clients are told the proxy's address (the broker advertises it)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._up = threading.Event()
        self._up.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)  # a long poll (a group join, a fetch) is not a dead peer
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._stop = True
        self.cut()
        self._server.close()


@dataclass
class Stack:
    """A broker (optionally behind a fault proxy), a data directory and the environment for
    ``trail`` commands and the sink process."""

    work: Path
    proxied: bool = False
    broker: LocalBroker | None = None
    proxy: FaultProxy | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> Stack:
        self.work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        if self.proxied:
            self.proxy = FaultProxy(port)
        self.broker = LocalBroker(
            port=port,
            log_path=self.work / "broker.log",
            advertised_port=self.proxy.port if self.proxy else None,
        ).start()
        topics = {f"{NS}trail.{t}": n for t, n in (("events", 4), ("deadletter", 1), ("checkpoints", 1))}
        topics[f"{NS}trail.producers"] = 1
        ensure_topics(self.bootstrap, topics)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRAIL_")}
        self.env.update(
            TRAIL_DATA_DIR=str(self.work / "data"),
            TRAIL_KAFKA_BOOTSTRAP=self.bootstrap,
            TRAIL_NAMESPACE=NS,
            TRAIL_SUBJECT_KEY=KEY,
            TRAIL_SINK_BATCH_SIZE="5000",
            TRAIL_SINK_BATCH_SECONDS="0.3",
            TRAIL_CHECKPOINT_SECONDS="2",
            TRAIL_LOG_FORMAT="json",
            TRAIL_LOG_LEVEL="info",
        )
        return self

    @property
    def bootstrap(self) -> str:
        assert self.broker is not None
        return f"127.0.0.1:{self.proxy.port}" if self.proxy else self.broker.bootstrap

    @property
    def topic(self) -> str:
        return f"{NS}trail.events"

    def client(self, service: str, **options: Any) -> Client:
        return Client(
            service=service,
            transport=KafkaTransport(self.bootstrap, self.topic, timeout_s=2),
            subject_key=KEY.encode(),
            spool_dir=self.work / "spool",
            retry_interval_s=0.5,
            **options,
        )

    def sink(self) -> subprocess.Popen[bytes]:
        log = open(self.work / "sink.log", "ab")  # noqa: SIM115  # the child holds it
        try:
            return subprocess.Popen(
                [sys.executable, str(ROOT / "consumers" / "sink.py")], env=self.env, stdout=log, stderr=log
            )
        finally:
            log.close()

    def committed(self) -> int:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=[self.bootstrap], group_id=f"{NS}trail-sink", enable_auto_commit=False)
        try:
            parts = [TopicPartition(self.topic, p) for p in sorted(c.partitions_for_topic(self.topic) or [])]
            return sum((c.committed(tp) or 0) for tp in parts)
        finally:
            c.close()

    def end_offsets(self) -> int:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=[self.bootstrap], enable_auto_commit=False)
        try:
            parts = [TopicPartition(self.topic, p) for p in sorted(c.partitions_for_topic(self.topic) or [])]
            return sum(c.end_offsets(parts).values())
        finally:
            c.close()

    def sink_log(self) -> str:
        try:
            return (self.work / "sink.log").read_text(errors="replace")
        except OSError:
            return ""

    def flushed(self) -> int:
        """Batches the sink processes have flushed so far (from their logs)."""
        try:
            text = (self.work / "sink.log").read_text(errors="replace")
        except OSError:
            return 0
        return text.count('"sink.batch_flushed"')

    def trail(self, *args: str) -> tuple[int, str]:
        res = subprocess.run([TRAIL, *args], env=self.env, capture_output=True, text=True, timeout=1800, check=False)
        return res.returncode, res.stdout

    def audit(self, n: int) -> dict[str, Any]:
        """With no sink running: what the store holds, gaps and a strict verify."""
        code, out = self.trail("counts", "--format", "json")
        counts = json.loads(out) if code == 0 else {}
        gaps_code, gaps_out = self.trail("gaps", "--format", "json")
        gaps = [json.loads(line) for line in gaps_out.splitlines() if line.strip()]
        v_code, v_out = self.trail("verify", "--strict", "--format", "json")
        try:
            summary = json.loads(v_out.splitlines()[0])
        except (ValueError, IndexError):
            summary = {}
        stored = int(counts.get("events", 0))
        redeliveries = int(counts.get("deliveries", 0)) - stored
        duplicates = redeliveries
        if redeliveries and stored <= 200_000:
            # copies kept under another producer (a replay after a crash) are never shown twice:
            # what a query returns is what a user sees
            q_code, q_out = self.trail("query", "events", "--limit", str(stored + 1000), "--format", "json")
            ids = [json.loads(line)["event_id"] for line in q_out.splitlines() if line.strip()] if q_code == 0 else []
            duplicates = len(ids) - len(set(ids)) if ids else redeliveries
        return {
            "stored": stored,
            "lost": max(0, n - stored),
            "duplicates": duplicates,
            "redeliveries": redeliveries,
            "gaps": gaps,
            "gaps_clean": gaps_code == 0 and not gaps,
            "verify_intact": v_code == 0 and bool(summary.get("intact")),
            "unsealed": summary.get("unsealed_events"),
        }

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.proxy is not None:
            self.proxy.close()


def record_stream(stack: Stack, services: int, n: int, pace_per_s: float | None = None, **opts: Any) -> list[Client]:
    """``services`` clients record ``n`` events between them, each in its own thread; returns
    the clients (closed) after all was handed over."""
    clients = [stack.client(f"svc-{i}", **opts) for i in range(services)]

    def run(k: int) -> None:
        c = clients[k]
        start = time.monotonic()
        for j, i in enumerate(range(k, n, services)):
            c.record(**event(i))
            if pace_per_s:
                ahead = start + j / (pace_per_s / services) - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(services)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients


def stop_proc(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


# --------------------------------------------------------------------------- the drills
def sink_sigkill(work: Path, events: int = 1_000_000, kills: int = 10) -> dict[str, Any]:
    stack = Stack(work).start()
    started = time.monotonic()
    sink = stack.sink()
    try:
        done = threading.Event()
        holder: dict[str, Any] = {}

        def produce() -> None:
            holder["clients"] = record_stream(stack, 2, events)
            done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        killed = 0
        while killed < kills:
            before, since = stack.flushed(), time.monotonic()
            # kill in the middle of the work: after one more batch (or a few seconds once the
            # stream is over and the sink idles), at a random moment
            while stack.flushed() <= before and time.monotonic() - since < (3 if done.is_set() else 300):
                time.sleep(0.05)
            time.sleep(random.uniform(0.0, 0.5))
            sink.send_signal(signal.SIGKILL)
            sink.wait(30)
            killed += 1
            sink = stack.sink()
        producer.join()
        for c in holder["clients"]:
            if not c.close(timeout=300):
                raise RuntimeError("a client could not deliver its events")
        wait_until(lambda: stack.committed() >= stack.end_offsets(), 1800, "the sink to commit everything", 1.0)
        stop_proc(sink)
        audit = stack.audit(events)
    finally:
        stop_proc(sink, signal.SIGKILL)
        stack.stop()
    passed = audit["lost"] == 0 and audit["duplicates"] == 0 and audit["gaps_clean"] and audit["verify_intact"]
    return {"name": "sink_sigkill", "events": events, "kills": killed, **audit, "passed": passed,
            "elapsed_s": round(time.monotonic() - started, 1)}  # fmt: skip


def broker_unreachable(work: Path, events: int = 300_000, outage_s: float = 60.0, services: int = 3) -> dict[str, Any]:
    from kafka import KafkaConsumer, TopicPartition

    stack = Stack(work, proxied=True).start()
    assert stack.proxy is not None
    started = time.monotonic()
    sink = stack.sink()
    rate = events / (outage_s * 3)  # the stream spans the outage: a third before, during and after
    spooled = 0
    try:
        holder: dict[str, Any] = {}
        producer = threading.Thread(
            target=lambda: holder.update(clients=record_stream(stack, services, events, pace_per_s=rate))
        )
        # the sink joins its group before the stream (Tansu answers a join after seconds): the
        # outage then cuts a running pipeline, not one still starting
        wait_until(lambda: "sink.assigned" in stack.sink_log(), 300, "the sink to join its group")
        producer.start()
        time.sleep(outage_s)
        stack.proxy.cut()
        time.sleep(outage_s)
        stack.proxy.restore()
        producer.join()
        for c in holder["clients"]:
            spooled += c.stats.spooled
            if not c.close(timeout=600):
                raise RuntimeError("a client could not deliver its events")
        wait_until(lambda: stack.committed() >= stack.end_offsets(), 1800, "the sink to commit everything", 1.0)
        stop_proc(sink)
        # every producer's events in order on the topic
        consumer = KafkaConsumer(bootstrap_servers=[stack.bootstrap], enable_auto_commit=False)
        parts = [TopicPartition(stack.topic, p) for p in sorted(consumer.partitions_for_topic(stack.topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        last: dict[str, int] = {}
        seen: dict[str, set[int]] = {}
        out_of_order = resent = 0
        while any(consumer.position(tp) < end[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=1000, max_records=50_000).values():
                for r in records:
                    p = json.loads(r.value)["producer"]
                    mine = seen.setdefault(p["id"], set())
                    if p["seq"] in mine:
                        resent += 1  # a batch whose acknowledgement the cut lost, sent again
                    elif p["seq"] < last.get(p["id"], 0):
                        out_of_order += 1  # a new event behind a later one of its producer
                    mine.add(p["seq"])
                    last[p["id"]] = max(p["seq"], last.get(p["id"], 0))
        consumer.close()
        audit = stack.audit(events)
    finally:
        stop_proc(sink, signal.SIGKILL)
        stack.stop()
    passed = audit["lost"] == 0 and audit["duplicates"] == 0 and out_of_order == 0 and audit["gaps_clean"]
    return {"name": "broker_unreachable", "events": events, "services": services, "outage_s": outage_s,
            "spooled_during_outage": spooled, "out_of_order": out_of_order, "resent_on_topic": resent,
            **audit, "passed": passed,
            "elapsed_s": round(time.monotonic() - started, 1)}  # fmt: skip


def store_unavailable(
    work: Path, store: Any, bootstrap: str, topics: dict[str, str], events: int = 100_000, outage_s: float = 60.0
) -> dict[str, Any]:
    """In-process: the sink in a thread over ``store``, whose inserts fail for ``outage_s``."""
    from trail.ingest.sink import Sink, SinkConfig

    class Flaky:
        """The store, refusing every insert while ``down`` is set."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.down = threading.Event()
            self.refused = 0

        def insert_event_rows(self, rows: Any, **kw: Any) -> Any:  # the sink's insert
            if self.down.is_set():
                self.refused += 1
                raise StoreError("the store is unavailable (drill)")
            return self.inner.insert_event_rows(rows, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    flaky = Flaky(store)
    cfg = SinkConfig(bootstrap=bootstrap, topic=topics["events"], deadletter_topic=topics["deadletter"],
                     group_id=f"{topics['events']}.sink", batch_size=5000, batch_seconds=0.3,
                     backoff_initial_s=0.2, backoff_max_s=2.0)  # fmt: skip
    sink = Sink(cfg, flaky)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sink.run()
        except BaseException as exc:  # noqa: BLE001  # reported in the result
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    sink.ready.wait(60)
    started = time.monotonic()

    def committed() -> int:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=cfg.group_id, enable_auto_commit=False)
        try:
            parts = [TopicPartition(cfg.topic, p) for p in sorted(c.partitions_for_topic(cfg.topic) or [])]
            return sum((c.committed(tp) or 0) for tp in parts)
        finally:
            c.close()

    clients = [
        Client(service=f"svc-{i}", transport=KafkaTransport(bootstrap, cfg.topic, timeout_s=5),
               subject_key=KEY.encode(), spool_dir=work / "spool")
        for i in range(2)
    ]  # fmt: skip
    third = events // 3
    past_stored = 0
    try:
        for i in range(third):
            clients[i % 2].record(**event(i))
        for c in clients:
            c.flush(timeout=120)
        wait_until(lambda: store.count_events() >= third, 300, "the first third stored")
        flaky.down.set()
        end = time.monotonic() + outage_s
        i = third
        while time.monotonic() < end:
            stop = min(events - third, i + max(1, third // 20))
            while i < stop:
                clients[i % 2].record(**event(i))
                i += 1
            # nothing committed past what is stored
            if committed() > store.count_events():
                past_stored += 1
            time.sleep(max(0.0, min(outage_s / 20, end - time.monotonic())))
        flaky.down.clear()
        while i < events:
            clients[i % 2].record(**event(i))
            i += 1
        for c in clients:
            c.close(timeout=300)
        wait_until(lambda: store.count_events() >= events, 900, "every event stored")
        stored = store.count_events()
        counts = store.counts()
        gaps = store.gaps()
    finally:
        sink.stop()
        thread.join(60)
    passed = stored == events and past_stored == 0 and not gaps and not errors and flaky.refused > 0
    return {"name": "store_unavailable", "events": events, "outage_s": outage_s, "inserts_refused": flaky.refused,
            "committed_past_stored": past_stored, "stored": stored, "lost": events - stored,
            "duplicates": int(counts["deliveries"]) - int(counts["events"]), "gaps_clean": not gaps,
            "error": repr(errors[0]) if errors else None, "passed": passed,
            "elapsed_s": round(time.monotonic() - started, 1)}  # fmt: skip


def _service(bootstrap: str, topic: str, spool: str, durable: bool, count: Any, ready: Any) -> None:
    """A service process: records as fast as it can until killed; ``count`` = events accepted."""
    client = Client(service="svc-killed", transport=KafkaTransport(bootstrap, topic, timeout_s=5),
                    subject_key=KEY.encode(), spool_dir=Path(spool), durable=durable, heartbeat_s=0.2)  # fmt: skip
    client.record(**event(0))  # connected and delivering before the stream starts
    client.flush(timeout=60)
    count.value = 1
    ready.value = 1
    i = 1
    while True:
        client.record(**event(i))
        i += 1
        count.value = i


def service_sigkill(work: Path, run_s: float = 10.0, durable: bool = False) -> dict[str, Any]:
    stack = Stack(work).start()
    started = time.monotonic()
    sink = stack.sink()
    ctx = mp.get_context("spawn")
    count = ctx.Value(ctypes.c_long, 0, lock=False)
    ready = ctx.Value(ctypes.c_int, 0, lock=False)
    spool = work / "spool"
    try:
        proc = ctx.Process(target=_service, args=(stack.bootstrap, stack.topic, str(spool), durable, count, ready))
        proc.start()
        wait_until(lambda: ready.value, 60, "the service to start")
        time.sleep(run_s)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        accepted = int(count.value)
        replayed = 0
        if durable:  # the next client on the spool directory records the journal again
            c = stack.client("svc-next")
            c.close(timeout=300)
            replayed = c.stats.replayed
        time.sleep(3)  # let the last records reach the topic before the sink's last look
        wait_until(lambda: stack.committed() >= stack.end_offsets(), 900, "the sink to commit everything", 1.0)
        stop_proc(sink)
        audit = stack.audit(accepted)
    finally:
        stop_proc(sink, signal.SIGKILL)
        stack.stop()
    tails = [g for g in audit["gaps"] if "claimed" in g]
    reported = sum(int(g["missing"]) for g in tails)
    if durable:
        passed = audit["lost"] == 0 and audit["duplicates"] == 0 and not tails
    else:
        # the tail is reported up to the last heartbeat: reported <= lost, and reported > 0 when lost is
        passed = reported <= audit["lost"] and (audit["lost"] == 0 or reported > 0) and audit["duplicates"] == 0
    return {"name": "service_sigkill_durable" if durable else "service_sigkill", "events": accepted,
            "lost": audit["lost"], "reported_by_gaps": reported, "duplicates": audit["duplicates"],
            "replayed": replayed, "tails": tails, "passed": passed,
            "elapsed_s": round(time.monotonic() - started, 1)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events of the sink drill")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--outage", type=float, default=60.0)
    ap.add_argument("--only", action="append", help="run only these drills")
    ap.add_argument("--out", type=Path, default=ROOT / "load_tests" / "results" / "drills.json")
    args = ap.parse_args()
    import tempfile

    results: list[dict[str, Any]] = []
    drills: dict[str, Callable[[Path], dict[str, Any]]] = {
        "sink_sigkill": lambda w: sink_sigkill(w, args.events, args.kills),
        "broker_unreachable": lambda w: broker_unreachable(w, outage_s=args.outage),
        "store_unavailable": lambda w: _store_drill(w, args.outage),
        "service_sigkill": lambda w: service_sigkill(w),
        "service_sigkill_durable": lambda w: service_sigkill(w, durable=True),
    }
    for name, fn in drills.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"trail-drill-{name}-") as d:
            print(f"drill {name} ...", file=sys.stderr, flush=True)
            try:
                res = fn(Path(d))
            except Exception as exc:  # noqa: BLE001  # a drill that breaks is a failed drill, reported
                res = {"name": name, "events": 0, "lost": None, "duplicates": None, "passed": False,
                       "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
            print(json.dumps({k: v for k, v in res.items() if k not in ("gaps", "tails")}), file=sys.stderr)
            results.append(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["passed"] for r in results) else 1


def _store_drill(work: Path, outage_s: float) -> dict[str, Any]:
    """The store drill in a child process: chDB allows one store directory per process."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_store_child, args=(str(work), outage_s, q))
    p.start()
    res: dict[str, Any] = q.get(timeout=3600)
    p.join(60)
    return res


def _store_child(work: str, outage_s: float, q: Any) -> None:
    from trail.storage.store import Store

    stack = Stack(Path(work)).start()
    try:
        store = Store(f"chdb://{work}/store", "drill")
        store.migrate()
        topics = {"events": stack.topic, "deadletter": f"{NS}trail.deadletter"}
        q.put(store_unavailable(Path(work), store, stack.bootstrap, topics, outage_s=outage_s))
    except Exception as exc:  # noqa: BLE001  # reported as a failed drill
        q.put({"name": "store_unavailable", "events": 0, "lost": None, "duplicates": None, "passed": False,
               "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
