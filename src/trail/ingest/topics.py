"""Kafka plumbing shared by trail's consumers: settings, assignment, closing, reading a topic to its end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from trail.errors import TrailError


def read_to_end(
    bootstrap: str, topic: str, timeout_s: float = 60.0, *, options: dict[str, Any] | None = None
) -> Iterator[Any]:
    """Every record of ``topic`` up to the end offsets seen at the start, partition by partition
    in offset order. Raises TrailError when the end is not reached within ``timeout_s``.
    ``options``: the broker's security settings (``trail.config.kafka_options``)."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, bootstrap_timeout_ms=10_000, **(options or {})
    )
    try:
        parts = reader.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        ends = reader.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(reader.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TrailError(f"could not read {topic} to its end within {timeout_s:.0f} s")
            for recs in reader.poll(timeout_ms=200).values():
                yield from recs
    finally:
        reader.close()


def consumer_options(
    bootstrap: str, group_id: str, extra: dict[str, Any] | None = None, **tuned: Any
) -> dict[str, Any]:
    """KafkaConsumer settings every trail consumer shares: no auto-commit (offsets are committed
    only after the write they cover), earliest for a group with no offsets, a bounded bootstrap.
    ``tuned`` are the role's own settings; ``extra`` (from configuration) wins over both."""
    opts: dict[str, Any] = {
        "bootstrap_servers": bootstrap.split(","),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "bootstrap_timeout_ms": 10_000,
        **tuned,
    }
    opts.update(extra or {})
    return opts


def security_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The broker security settings among a role's client options (``trail.config.kafka_options``),
    for the producers a consumer role also runs."""
    return {k: v for k, v in opts.items() if k.startswith(("security_", "sasl_", "ssl_"))}


def assign_all(consumer: Any, topic: str, stop: Any, *, seek: bool = True, timeout_s: float = 30.0) -> list[Any]:
    """Assign every partition of ``topic`` (waiting for it to exist) and, with ``seek``, move each to
    its committed offset, or to the beginning when the group has none. For consumers that need all
    partitions; one that restores its own offsets passes ``seek=False``."""
    from kafka import TopicPartition

    deadline = time.monotonic() + timeout_s
    parts = consumer.partitions_for_topic(topic)
    while not parts and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.2)
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise TrailError(f"topic {topic} has no partitions (is it created?)")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    if seek:
        for tp in tps:
            seek_committed(consumer, tp)
    return tps


def seek_committed(consumer: Any, tp: Any) -> None:
    committed = consumer.committed(tp)
    if committed is None:
        consumer.seek_to_beginning(tp)
    else:
        consumer.seek(tp, committed)


def close_quietly(log: Any, event: str, *closers: Callable[[], object]) -> None:
    """Close clients in order; a failure is logged, never raised (closing must not hide the real outcome)."""
    for closer in closers:
        try:
            closer()
        except Exception as exc:  # noqa: BLE001
            log.warning(event, error=type(exc).__name__)
