"""The Kafka adapter of the loop (kafka-python), and the acknowledged producer the roles share.

Strict offsets: the consumer runs with ``auto_offset_reset="none"`` and never auto-commits.
kafka-python's ``NoOffsetForPartitionError`` (a partition the group has no offset for) becomes
:class:`~trail.ingest.errors.NoCommittedOffset`, which the loop answers with the role's
policy; ``OffsetOutOfRangeError`` and ``LogTruncationError`` become
:class:`~trail.ingest.errors.OffsetOutOfRange` with the partition's valid range.

Some Kafka-protocol brokers (the local Tansu broker among them) answer a fetch beyond the end
of a partition with an empty result and the high watermark instead of ``OFFSET_OUT_OF_RANGE``:
a consumer would then wait there silently until the log grew past it. So a partition whose
starting position was not confirmed yet (just assigned, or moved by ``seek``) is checked
against the high watermark of its first fetch answer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, cast

from trail.errors import TrailError, WriteFailed
from trail.ingest.errors import NoCommittedOffset, OffsetOutOfRange
from trail.ingest.step import Partition, Polled, Rebalance

#: Shared by every trail consumer; the role's tuned settings and configuration override them.
BASE_OPTIONS: dict[str, Any] = {
    "enable_auto_commit": False,  # offsets are committed only after the write they cover
    "auto_offset_reset": "none",  # never a silent reset: the loop decides, or stops
    "bootstrap_timeout_ms": 10_000,
}


class KafkaConsumerAdapter:
    """One ``KafkaConsumer`` on one topic: subscribed as a member of ``group_id`` (partitions
    shared by the group), or, with ``assign_all``, assigned every partition of the topic
    (offsets still committed under ``group_id``)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        *,
        assign_all: bool = False,
        tuned: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        topic_wait_s: float = 30.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.assign_all = assign_all
        self.topic_wait_s = topic_wait_s
        self.config: dict[str, Any] = {
            "bootstrap_servers": bootstrap.split(","),
            "group_id": group_id,
            **BASE_OPTIONS,
            **(tuned or {}),
            **(options or {}),
        }
        if self.config.get("auto_offset_reset") != "none" or self.config.get("enable_auto_commit"):
            raise TrailError("trail's consumers need auto_offset_reset='none' and enable_auto_commit=False")
        self._consumer: Any = None
        self._unconfirmed: set[Partition] = set()

    @property
    def kafka(self) -> Any:
        """The underlying ``KafkaConsumer``."""
        if self._consumer is None:
            raise RuntimeError("the consumer is not open")
        return self._consumer

    def open(self, rebalance: Rebalance, stopping: Callable[[], bool]) -> None:
        from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

        self._consumer = consumer = KafkaConsumer(**self.config)
        if not self.assign_all:
            adapter = self

            class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
                def on_partitions_revoked(self, revoked: Any) -> None:
                    rebalance.revoked(revoked)

                def on_partitions_assigned(self, assigned: Any) -> None:
                    adapter._unconfirmed.update(assigned)
                    rebalance.assigned(assigned)

            consumer.subscribe([self.topic], listener=Listener())
            return
        deadline = time.monotonic() + self.topic_wait_s
        parts = consumer.partitions_for_topic(self.topic)
        while not parts and time.monotonic() < deadline and not stopping():
            time.sleep(0.2)
            parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            raise TrailError(f"topic {self.topic} has no partitions (is it created?)")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        self._unconfirmed.update(tps)
        rebalance.assigned(tps)

    def poll(self, timeout_s: float, max_records: int | None) -> Polled:
        from kafka.errors import (
            KafkaConnectionError,
            LogTruncationError,
            NoOffsetForPartitionError,
            OffsetOutOfRangeError,
        )

        kwargs: dict[str, Any] = {"timeout_ms": int(timeout_s * 1000)}
        if max_records:
            kwargs["max_records"] = max_records
        try:
            polled = self.kafka.poll(**kwargs)
        except KafkaConnectionError:
            # The broker went away (a network cut): nothing was read; the client reconnects on
            # the next poll. Wait the poll's time so a long cut is not a busy loop.
            time.sleep(timeout_s)
            return {}
        except NoOffsetForPartitionError as exc:
            raise NoCommittedOffset(_partitions(exc)) from None
        except (OffsetOutOfRangeError, LogTruncationError) as exc:
            where = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
            if not where:
                raise TrailError(f"{self.topic}: the broker reported {type(exc).__name__}: {exc}") from None
            tp, offset = next(iter(where.items()))
            raise self._out_of_range(tp, _offset(offset)) from None
        if self._unconfirmed:
            self._confirm(polled)
        return cast(Polled, polled)

    def _confirm(self, polled: Mapping[Any, Sequence[Any]]) -> None:
        for tp in list(self._unconfirmed):
            if polled.get(tp):
                self._unconfirmed.discard(tp)  # records came from there: the position was in the log
                continue
            if tp not in self.kafka.assignment():
                self._unconfirmed.discard(tp)
                continue
            high = self.kafka.highwater(tp)
            if high is None:
                continue  # no fetch answer yet
            try:
                position = self.kafka.position(tp, timeout_ms=1000)
            except Exception:  # noqa: BLE001, S112  # e.g. another partition awaits its offset: check on the next poll
                continue
            if position is not None and position > high:
                raise self._out_of_range(tp, position, high)
            self._unconfirmed.discard(tp)

    def _out_of_range(self, tp: Any, offset: int, high: int | None = None) -> OffsetOutOfRange:
        low: int | None = None
        try:
            low = self.kafka.beginning_offsets([tp])[tp]
            end = self.kafka.end_offsets([tp])[tp]
            high = max(end, high) if high is not None else end
        except Exception:  # noqa: BLE001, S110  # the range is a courtesy in the message; the error stands
            pass
        return OffsetOutOfRange(tp.topic, tp.partition, offset, low, high, self.group_id)

    def assignment(self) -> set[Partition]:
        return cast(set[Partition], set(self.kafka.assignment()))

    def pause(self, partitions: Collection[Partition]) -> None:
        self.kafka.pause(*partitions)

    def resume(self, partitions: Collection[Partition]) -> None:
        self.kafka.resume(*partitions)

    def paused(self) -> set[Partition]:
        return cast(set[Partition], set(self.kafka.paused()))

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit; a broker connection lost meanwhile (a network cut) is a write that may succeed
        later (the loop backs off and commits again: committing the same offsets twice is safe),
        never a crash of the role."""
        from kafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError
        from kafka.structs import OffsetAndMetadata

        try:
            self.kafka.commit({_tp(p): OffsetAndMetadata(off, "", -1) for p, off in offsets.items()})
        except (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, OSError) as exc:
            raise WriteFailed("commit_failed", f"committing offsets: {type(exc).__name__}") from exc

    def committed(self, partition: Partition) -> int | None:
        off = self.kafka.committed(_tp(partition))
        return None if off is None else int(off)

    def seek(self, partition: Partition, offset: int) -> None:
        tp = _tp(partition)
        self.kafka.seek(tp, offset)
        self._unconfirmed.add(tp)

    def seek_to_beginning(self, partitions: Collection[Partition]) -> None:
        if partitions:  # kafka-python moves every assigned partition when given none
            self.kafka.seek_to_beginning(*[_tp(p) for p in partitions])

    def seek_to_end(self, partitions: Collection[Partition]) -> None:
        if partitions:
            self.kafka.seek_to_end(*[_tp(p) for p in partitions])

    def highwater(self, partition: Partition) -> int | None:
        high = self.kafka.highwater(_tp(partition))
        return None if high is None else int(high)

    def log_id(self) -> str | None:
        """The cluster id the broker reports (a fresh one at every start of the local broker)."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap.split(","), bootstrap_timeout_ms=10_000, **security_options(self.config)
        )
        try:
            cluster_id = admin.describe_cluster().get("cluster_id")
        finally:
            admin.close()
        return str(cluster_id) if cluster_id else None

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)


def security_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The broker security settings among a role's client options (``trail.config.kafka_options``),
    for the producers and admin clients a consumer role also opens."""
    return {k: v for k, v in opts.items() if k.startswith(("security_", "sasl_", "ssl_"))}


def _tp(p: Partition) -> Any:
    from kafka import TopicPartition

    return p if isinstance(p, TopicPartition) else TopicPartition(p.topic, p.partition)


def _partitions(exc: BaseException) -> set[Partition]:
    arg = exc.args[0] if exc.args else ()
    return {Partition(tp.topic, tp.partition) for tp in arg}


def _offset(value: Any) -> int:
    return int(getattr(value, "offset", value))


class AckedProducer:
    """A producer whose sends are waited for: every record acknowledged by all in-sync
    replicas (idempotent), or an error — the roles commit past a record only after that."""

    def __init__(self, bootstrap: str, *, linger_ms: int = 5, options: Mapping[str, Any] | None = None) -> None:
        from kafka import KafkaProducer

        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            bootstrap_timeout_ms=10_000,
            **security_options(options or {}),
        )

    def send_all(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes, Sequence[tuple[str, bytes]] | None]],
        timeout_s: float = 30.0,
    ) -> bool:
        """Send ``(key, value, headers)`` records and wait; True when every one was acknowledged."""
        futures = [self._producer.send(topic, key=k, value=v, headers=list(h) if h else None) for k, v, h in records]
        self._producer.flush(timeout=timeout_s)
        from trail.sdk.transport import unconfirmed

        return unconfirmed(futures) is None  # an answer without an offset is no acknowledgement

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.close(timeout_s)


class GroupOffsets:
    """What another consumer group has committed on one topic, read without joining it (the
    sealer reads the sinks' group: a record below its commit is stored)."""

    def __init__(self, bootstrap: str, topic: str, group_id: str, options: Mapping[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self._options = security_options(options or {})
        self._admin: Any = None

    def read(self) -> dict[int, int]:
        """Partition → the group's committed offset (the next record it will read); partitions
        it never committed are absent. Raises :class:`~trail.errors.WriteFailed` when the broker
        does not answer (a caller retries)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap.split(","), bootstrap_timeout_ms=10_000, **self._options
                )
            found = self._admin.list_group_offsets({self.group_id: None}).get(self.group_id, {})
        except (KafkaError, OSError) as exc:
            self.close()
            what = f"reading {self.group_id}'s offsets: {type(exc).__name__}"
            raise WriteFailed("group_offsets_failed", what) from exc
        return {
            int(tp.partition): int(_offset(meta))
            for tp, meta in found.items()
            if tp.topic == self.topic and _offset(meta) >= 0
        }

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):  # closing must not hide the real outcome
                admin.close()
