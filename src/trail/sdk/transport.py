"""Where the SDK's worker sends encoded events.

``Transport.send`` delivers a batch in order and returns once every record is acknowledged,
or raises :class:`TransportUnavailable`; the worker then spools the batch and retries later.
A transport may also ``announce`` how far its producer has got (a heartbeat or a close marker,
on ``trail.producers``): how ``trail gaps`` sees the tail a crashed service never sent.
Adapters live here so the client itself imports no broker library.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Protocol

from trail.errors import TransportUnavailable
from trail.logging import get_logger

log = get_logger("trail.sdk")


class Transport(Protocol):
    def send(self, key: bytes, values: list[bytes]) -> None:
        """Deliver ``values`` in order under ``key``; raise TransportUnavailable on failure."""

    def close(self) -> None: ...


def producers_topic_for(events_topic: str) -> str | None:
    """``<namespace>trail.producers`` beside ``<namespace>trail.events``."""
    return events_topic[: -len("events")] + "producers" if events_topic.endswith("trail.events") else None


def unconfirmed(futures: list[Any]) -> str | None:
    """Why the broker's answers to ``futures`` (kafka-python's record futures) do not confirm
    every record, or None when they do.

    A record counts as delivered only with an offset. kafka-python reports a batch the broker
    answered with DUPLICATE_SEQUENCE_NUMBER ("already written", after a retry across a cut
    connection) as a success with offset -1: the broker does not say where, and a broker that
    counted a sequence it never appended would lose the records silently. Sending them again
    costs at most a duplicate, which the trail collapses by ``event_id``."""
    for f in futures:
        if not f.is_done:
            return "broker did not acknowledge in time"
        if f.failed():
            return f"broker refused a record: {type(f.exception).__name__}"
        if getattr(f.value, "offset", -1) < 0:
            return "broker acknowledged a record without an offset (a duplicate sequence): sending it again"
    return None


class KafkaTransport:
    """kafka-python producer: acks=all, idempotent, batching with a short linger.

    The producer is created lazily and thrown away after a failure, so a broker that comes
    back (possibly empty, with no memory of our producer id) gets a fresh session.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        timeout_s: float = 10.0,
        linger_ms: int = 5,
        extra: dict[str, Any] | None = None,
        producers_topic: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.producers_topic = producers_topic or producers_topic_for(topic)
        self.timeout_s = timeout_s
        self.linger_ms = linger_ms
        self.extra = extra or {}
        self._producer: Any = None
        self._partition: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._announcer: Any = None
        self._announce_lock = threading.Lock()

    def _connect(self, *, idempotent: bool = True) -> Any:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        try:
            return KafkaProducer(
                bootstrap_servers=self.bootstrap.split(","),
                acks="all",
                enable_idempotence=idempotent,
                linger_ms=self.linger_ms,
                batch_size=256 * 1024,
                max_request_size=2 * 1024 * 1024,
                compression_type=None,
                bootstrap_timeout_ms=int(self.timeout_s * 1000),
                max_block_ms=int(self.timeout_s * 1000),
                request_timeout_ms=int(self.timeout_s * 1000),
                delivery_timeout_ms=int(self.timeout_s * 1000) + self.linger_ms + 1,
                reconnect_backoff_max_ms=1000,
                **self.extra,
            )
        except (KafkaError, OSError) as exc:
            raise TransportUnavailable(f"broker {self.bootstrap} unreachable: {type(exc).__name__}") from None

    def send(self, key: bytes, values: list[bytes]) -> None:
        from kafka.errors import KafkaError

        with self._lock:
            if self._producer is None:
                self._producer = self._connect()
            producer = self._producer
            try:
                partition = self._partition.get(key)
                if partition is None:
                    # kafka-python's default partitioner (murmur2, pure Python) once per key, not per record
                    from kafka.partitioner.default import murmur2

                    parts = sorted(producer.partitions_for(self.topic))
                    partition = self._partition[key] = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
                futures = [producer.send(self.topic, key=key, value=v, partition=partition) for v in values]
                producer.flush(timeout=self.timeout_s)
                problem = unconfirmed(futures)
                if problem:
                    raise TransportUnavailable(problem)
            except (KafkaError, OSError, AssertionError) as exc:
                self._drop()
                raise TransportUnavailable(f"broker error: {type(exc).__name__}") from None
            except TransportUnavailable:
                self._drop()
                raise

    def announce(self, key: bytes, value: bytes) -> None:
        """Send one progress record of the producer to ``trail.producers`` (acknowledged)."""
        from kafka.errors import KafkaError

        if not self.producers_topic:
            return
        # A producer of its own: a heartbeat never shares (or disturbs) the idempotent session
        # the events travel in, nor waits for the lock a send in progress holds.
        with self._announce_lock:
            try:
                if self._announcer is None:
                    self._announcer = self._connect(idempotent=False)
                self._announcer.send(self.producers_topic, key=key, value=value).get(timeout=self.timeout_s)
            except (KafkaError, OSError, AssertionError, TransportUnavailable) as exc:
                announcer, self._announcer = self._announcer, None
                if announcer is not None:
                    with contextlib.suppress(Exception):
                        announcer.close(timeout=0)
                raise TransportUnavailable(f"progress not announced: {type(exc).__name__}") from None

    def _drop(self) -> None:
        self._partition.clear()  # the topic may come back with other partitions
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as exc:  # noqa: BLE001  # closing a broken producer must not mask the failure
                log.debug("sdk.producer_close_failed", error=type(exc).__name__)

    def close(self) -> None:
        with self._announce_lock:
            if self._announcer is not None:
                with contextlib.suppress(Exception):
                    self._announcer.close(timeout=self.timeout_s)
                self._announcer = None
        with self._lock:
            if self._producer is not None:
                try:
                    self._producer.flush(timeout=self.timeout_s)
                finally:
                    self._producer.close(timeout=self.timeout_s)
                    self._producer = None


class CallbackTransport:
    """Hands each batch to a function (used to write straight into a store, and in tests)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def send(self, key: bytes, values: list[bytes]) -> None:
        self.fn(key, values)

    def close(self) -> None:
        return None
