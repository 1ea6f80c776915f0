"""Where the SDK's worker sends encoded events.

``Transport.send`` delivers a batch in order and returns once every record is acknowledged,
or raises :class:`TransportUnavailable`; the worker then spools the batch and retries later.
A transport may also ``announce`` how far its producer has got (a heartbeat or a close marker,
on ``trail.producers``): how ``trail gaps`` sees the tail a crashed service never sent.
Adapters live here so the client itself imports no broker library.
"""

from __future__ import annotations

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

    def _connect(self) -> Any:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        try:
            return KafkaProducer(
                bootstrap_servers=self.bootstrap.split(","),
                acks="all",
                enable_idempotence=True,
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
                for f in futures:
                    if not f.is_done:
                        raise TransportUnavailable("broker did not acknowledge in time")
                    if f.failed():
                        raise TransportUnavailable(f"broker refused a record: {type(f.exception).__name__}")
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
        producer = self._producer  # kafka-python's producer is thread-safe: a send in progress
        if producer is None:  # (which holds the lock) must not hold up a heartbeat
            with self._lock:
                if self._producer is None:
                    self._producer = self._connect()
                producer = self._producer
        try:
            producer.send(self.producers_topic, key=key, value=value).get(timeout=self.timeout_s)
        except (KafkaError, OSError, AssertionError) as exc:
            # Not a reason to drop the events' producer: the topic may be missing or forbidden.
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
