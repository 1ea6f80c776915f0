"""Producers' progress claims (``trail.producers``) against what the trail holds: lost tails.

Every SDK client announces the sequence number its last accepted event has (see
:mod:`trail.sdk.progress`). Read at ``trail gaps`` time: the last claim of each producer,
compared with the highest ``producer.seq`` stored, shows the tail a crashed service accepted and
never delivered — "producer P claimed up to N, the trail holds up to M". A producer whose
journal another client replayed (durable mode) lost nothing and is not reported. For a producer
still running, a claim can be a moment ahead of the store while its last events are in flight.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from trail.sdk.progress import parse_progress


def read_claims(
    bootstrap: str,
    topic: str,
    options: Mapping[str, Any] | None = None,
    timeout_s: float = 15.0,
    connect_timeout_s: float = 3.0,
) -> dict[str, dict[str, Any]]:
    """The last progress record of each producer on ``topic`` (empty if the topic is missing or
    the broker does not answer within ``connect_timeout_s``: gaps inside the trail are still shown)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            enable_auto_commit=False,
            group_id=None,
            bootstrap_timeout_ms=int(connect_timeout_s * 1000),
            **dict(options or {}),
        )
    except (KafkaError, OSError):
        return {}
    latest: dict[str, dict[str, Any]] = {}
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            return {}
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    rec = parse_progress(r.value)
                    if rec is not None:
                        latest[rec["producer"]] = rec
    except KafkaError:
        return latest
    finally:
        consumer.close()
    return latest


def lost_tails(claims: Mapping[str, Mapping[str, Any]], held: Mapping[str, int]) -> list[dict[str, Any]]:
    """Rows for ``trail gaps``: each producer whose last claim is beyond what the trail holds."""
    out = []
    for pid in sorted(claims):
        rec = claims[pid]
        if rec.get("replayed_by"):
            continue
        claimed, have = int(rec["seq"]), int(held.get(pid, 0))
        if claimed > have:
            out.append(
                {
                    "producer_id": pid,
                    "first_missing": have + 1,
                    "last_missing": claimed,
                    "missing": claimed - have,
                    "claimed": claimed,
                    "held": have,
                    "closed": bool(rec.get("closed")),
                    "detail": f"producer {pid} claimed up to {claimed}, the trail holds up to {have}",
                }
            )
    return out
